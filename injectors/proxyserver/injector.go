package proxyserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// Kind is the fault kind runbooks name as proxyToxics.
const Kind = "proxy-toxics"

// requestTimeout bounds one API call of the injector; a lease renewal that takes longer is
// retried at the next tick.
const requestTimeout = 5 * time.Second

// Injector is the proxy-toxics fault kind: toxics on a long-lived proxy of a `faultline proxy
// serve`, for the fault window.
type Injector struct {
	mu   sync.Mutex
	live map[string]*action // by owner: the faults this process applied and still renews
}

// NewInjector returns the proxy-toxics injector.
func NewInjector() *Injector { return &Injector{live: map[string]*action{}} }

// Injectors returns this package's injectors, for the registry.
func Injectors() []injectors.Injector { return []injectors.Injector{NewInjector()} }

// Kind implements injectors.Injector.
func (*Injector) Kind() string { return Kind }

// record is what the ledger keeps: enough to delete the toxics from another process.
type record struct {
	Server    string `json:"server"`
	Proxy     string `json:"proxy"`
	Owner     string `json:"owner"`
	TokenFile string `json:"tokenFile,omitempty"`
}

type action struct {
	inj    *Injector
	rec    record
	client *Client
	toxics []runbooks.ProxyToxic
	lease  time.Duration
	target string
	lines  []string
	log    *slog.Logger

	// mu is held across each renewal; stopped is set under it by Revert, so no renewal can put
	// the toxics back after the revert's DELETE.
	mu      sync.Mutex
	stopped bool
}

// Prepare implements injectors.Injector: it asks the server for the proxy, so a server that is
// down, a proxy it does not run or a token it refuses stops the run before anything is applied.
func (inj *Injector) Prepare(ctx context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	spec := f.ProxyToxics
	if spec == nil {
		return nil, fmt.Errorf("proxy-toxics injector: fault %q is not a proxyToxics fault", f.Name)
	}
	token, err := readToken(spec.TokenFile)
	if err != nil {
		return nil, policy.Refusef("tokenFile", "%v", err)
	}
	c, err := NewClient(spec.Server, token, nil)
	if err != nil {
		return nil, policy.Refusef("target", "%v", err)
	}
	lease := spec.Lease.D()
	if lease == 0 {
		lease = runbooks.DefaultToxicLease
	}
	qctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ps, err := c.Proxy(qctx, spec.Proxy)
	switch {
	case errors.Is(err, ErrNotFound):
		names := "none"
		if all, lerr := c.Proxies(qctx); lerr == nil && len(all) > 0 {
			ns := make([]string, len(all))
			for i, p := range all {
				ns[i] = p.Name
			}
			names = strings.Join(ns, ", ")
		}
		return nil, policy.Refusef("target", "proxy server %s runs no proxy %q (it runs: %s)", c.Base(), spec.Proxy, names)
	case err != nil:
		return nil, policy.Refusef("target", "cannot reach the proxy server: %v", err)
	}
	owner := Owner(env.RunID, f.Name)
	return &action{
		inj:    inj,
		rec:    record{Server: c.Base(), Proxy: spec.Proxy, Owner: owner, TokenFile: spec.TokenFile},
		client: c, toxics: spec.Toxics, lease: lease, log: logger(env),
		target: fmt.Sprintf("proxy %s (%s → %s) on %s", ps.Name, ps.Listen, ps.Upstream, c.Base()),
	}, nil
}

// Owner is the owner name a run's fault holds its toxics under.
func Owner(runID, fault string) string {
	b := []byte(runID + "." + fault)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("._:@+=-", ch) >= 0) {
			b[i] = '_'
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// Targets implements injectors.Action.
func (a *action) Targets() []string { return []string{a.target} }

// Record implements injectors.Action.
func (a *action) Record() (json.RawMessage, error) {
	b, err := json.Marshal(a.rec)
	if err != nil {
		return nil, fmt.Errorf("encode proxy-toxics record: %w", err)
	}
	return b, nil
}

// Apply implements injectors.Action.
func (a *action) Apply(ctx context.Context, _ injectors.Recorder) error {
	a.inj.mu.Lock()
	a.inj.live[a.rec.Owner] = a
	a.inj.mu.Unlock()
	// As for renewals: a halt during Apply must not abandon a PUT the server could apply after
	// the revert's DELETE.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
	defer cancel()
	resp, err := a.client.SetToxics(rctx, a.rec.Proxy, a.rec.Owner, a.toxics, a.lease)
	if err != nil {
		return fmt.Errorf("set toxics on proxy %s: %w", a.rec.Proxy, err)
	}
	a.lines = []string{fmt.Sprintf("toxics on %s as owner %s, lease %s (renewed every %s)", a.target, a.rec.Owner, a.lease, a.lease/3)}
	for _, d := range resp.Description {
		a.lines = append(a.lines, "toxic "+d)
	}
	return nil
}

// Describe implements injectors.Describer.
func (a *action) Describe() []string { return append([]string(nil), a.lines...) }

// Sustain implements injectors.Sustainer: it renews the lease every third of it for the window.
// A renewal that fails is reported and retried; when none has succeeded for a whole lease the
// server has dropped the toxics, the fault is no longer in place, and Sustain fails the window.
func (a *action) Sustain(ctx context.Context, _ injectors.Recorder, report func(injectors.Event)) error {
	t := time.NewTicker(a.lease / 3)
	defer t.Stop()
	last := time.Now()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		stopped, err := a.renew(ctx)
		if stopped {
			return nil
		}
		now := time.Now()
		switch {
		case err == nil:
			if failing {
				report(injectors.Event{Time: now, Message: "lease renewed again", Targets: a.Targets()})
			}
			last, failing = now, false
		case ctx.Err() != nil:
			return nil
		default:
			if !failing {
				report(injectors.Event{Time: now, Message: "lease renewal failed: " + err.Error(), Targets: a.Targets()})
			}
			failing = true
			if now.Sub(last) >= a.lease {
				return fmt.Errorf("no lease renewal succeeded for %s: the server has dropped the toxics (last error: %w)", a.lease, err)
			}
		}
	}
}

// renew puts the toxics again unless the fault was reverted; stopped reports that it was.
func (a *action) renew(ctx context.Context) (stopped bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return true, nil
	}
	// Not cancelled with the window: a renewal abandoned on this side may still be applied by the
	// server, after the revert's DELETE. Waiting for its answer orders the two. A server slower
	// than the timeout can still apply it late; nothing renews it then, so the lease ends it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(requestTimeout, a.lease/3))
	defer cancel()
	_, err = a.client.SetToxics(rctx, a.rec.Proxy, a.rec.Owner, a.toxics, a.lease)
	return false, err
}

// Revert implements injectors.Injector. A server that no longer runs the proxy (it restarted with
// another config) holds no toxics for it; a server that cannot be reached fails the revert, which
// recover retries, though the toxics go by themselves within a lease of the last renewal.
func (inj *Injector) Revert(ctx context.Context, raw json.RawMessage, env injectors.Env) error {
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("decode proxy-toxics record: %w", err)
	}
	// The engine reverts as soon as the window ends, while the fault's renewals may still be
	// running: stop them first (waiting out one in flight), or one could put the toxics back.
	inj.mu.Lock()
	a := inj.live[rec.Owner]
	delete(inj.live, rec.Owner)
	inj.mu.Unlock()
	if a != nil {
		a.mu.Lock()
		a.stopped = true
		a.mu.Unlock()
	}
	token, err := readToken(rec.TokenFile)
	if err != nil {
		return err
	}
	c, err := NewClient(rec.Server, token, nil)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	err = c.DeleteToxics(rctx, rec.Proxy, rec.Owner)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		logger(env).Info("proxy-toxics revert: the server no longer runs the proxy, so it holds no toxics for it", "server", rec.Server, "proxy", rec.Proxy)
		return nil
	case errUnreachable(err):
		return fmt.Errorf("remove toxics of %s from proxy %s: %w (the server drops them by itself at most one lease after the last renewal; recover retries)", rec.Owner, rec.Proxy, err)
	}
	return fmt.Errorf("remove toxics of %s from proxy %s: %w", rec.Owner, rec.Proxy, err)
}

// readToken reads a bearer token file: the token alone, surrounding blanks ignored.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("proxy server token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\n") {
		return "", fmt.Errorf("proxy server token file %s: want the token alone on one line", path)
	}
	return tok, nil
}

func logger(env injectors.Env) *slog.Logger {
	if env.Logger != nil {
		return env.Logger
	}
	return slog.New(slog.DiscardHandler)
}
