package agentlease

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// Agents keeps one client per agent address.
type Agents struct {
	tls *tls.Config
	mu  sync.Mutex
	by  map[string]*agentapi.Client
}

// NewAgents loads the run's client certificate and the CA; field names the runbook field the
// files come from, for the refusal.
func NewAgents(t runbooks.AgentTLS, field string) (*Agents, error) {
	conf, err := agentapi.ClientTLS(t.CAFile, t.CertFile, t.KeyFile)
	if err != nil {
		return nil, policy.Refusef(field, "%v", err)
	}
	return &Agents{tls: conf, by: map[string]*agentapi.Client{}}, nil
}

// Get returns the client of the agent at addr (https://host:port).
func (g *Agents) Get(addr string) *agentapi.Client {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.by[addr]
	if !ok {
		c = agentapi.NewClient(addr, g.tls)
		g.by[addr] = c
	}
	return c
}

// Close closes the idle connections of every client.
func (g *Agents) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.by {
		c.CloseIdleConnections()
	}
}

// Revert asks af's agent to revert it. A fault the agent does not know is reverted (the agent
// reverted it on lease expiry, or it was never applied). When the agent does not answer at all
// and relocate finds it at another address (a replaced agent pod), that address is asked.
func (g *Agents) Revert(ctx context.Context, af Fault, relocate func(context.Context) (string, bool)) error {
	_, err := g.Get(af.Agent).Revert(ctx, af.ID)
	var apiErr *agentapi.APIError
	if err != nil && !errors.As(err, &apiErr) && ctx.Err() == nil && relocate != nil {
		if addr, ok := relocate(ctx); ok && addr != af.Agent {
			_, err = g.Get(addr).Revert(ctx, af.ID)
		}
	}
	if err == nil || errors.Is(err, agentapi.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("revert fault %s on %s: %w", af.ID, af.Where, err)
}

// RevertAll asks every fault's agent to revert it, all at once, with a client made from the
// record's TLS files (field names where they came from). relocate, when not nil, finds a fault's
// agent again when its recorded address does not answer.
func RevertAll(ctx context.Context, t runbooks.AgentTLS, field string, faults []Fault, relocate func(context.Context, Fault) (string, bool)) error {
	if len(faults) == 0 {
		return nil
	}
	agents, err := NewAgents(t, field)
	if err != nil {
		return err
	}
	defer agents.Close()
	errs := make([]error, len(faults))
	ForEach(len(faults), func(k int) {
		var find func(context.Context) (string, bool)
		if relocate != nil {
			find = func(ctx context.Context) (string, bool) { return relocate(ctx, faults[k]) }
		}
		errs[k] = agents.Revert(ctx, faults[k], find)
	})
	return errors.Join(errs...)
}

// Owner names the run to the agents: its host and pid.
func Owner() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("faultline run on %s (pid %d)", h, os.Getpid())
}

// concurrency bounds the agent requests in flight.
const concurrency = 16

// ForEach calls fn for 0..n-1, concurrency at a time, and waits for all.
func ForEach(n int, fn func(k int)) {
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for k := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(k)
		}()
	}
	wg.Wait()
}
