package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/agent/podnetns"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/injectors/process"
	"github.com/faultline-dev/faultline/injectors/proxy"
	"github.com/faultline-dev/faultline/safety/ledger"
	"github.com/prometheus/client_golang/prometheus"
)

// ReasonAgentRestarted closes a fault a restarted agent cannot hold again: one it had recorded
// but not finished applying, or a latency fault whose transparent proxy ran in the old process.
const ReasonAgentRestarted = "agent restarted"

// PodResolver finds a pod's network namespace on this node (podnetns.Resolver).
type PodResolver interface {
	Resolve(ctx context.Context, namespace, name, uid string) (podnetns.Pod, error)
}

// Config configures an Agent.
type Config struct {
	// NodeName is the node the agent serves, recorded with every fault.
	NodeName string
	// StateDir holds the ledger (ledger.db); on Kubernetes a hostPath, so that it outlives the pod.
	StateDir string
	// MaxLease bounds the lease a request may ask for (default 5m).
	MaxLease time.Duration
	// NetnsDir is where named namespaces are (default /var/run/netns).
	NetnsDir string
	// Pods resolves pod targets; nil refuses them (a plain host).
	Pods PodResolver
	// Retain is how long reverted faults stay listed and answer renewals with 410 (default 1h).
	Retain time.Duration
	Logger *slog.Logger
	// Metrics receives the agent's collectors; nil registers them nowhere.
	Metrics prometheus.Registerer
}

// Agent holds network faults on leases.
type Agent struct {
	cfg Config
	log *slog.Logger
	led *ledger.FileLedger
	// lw writes the ledger: concurrent changes of different faults share commits.
	lw  *ledger.Group
	reg *injectors.Registry
	m   *metrics

	// mu guards faults and what they hold; held briefly. A change of a fault (apply, renew,
	// revert) also holds the fault's and its namespace's locks for its whole course (lockFault).
	mu     sync.Mutex
	faults map[string]*held
	locks  keyLocks

	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// held is one fault of the agent, as the API shows it plus what a revert needs.
type held struct {
	f      agentapi.Fault
	record json.RawMessage
	target network.Target
	// retryAt is when a failed revert is tried again.
	retryAt time.Time
}

// meta is what the agent keeps in a ledger entry's Meta.
type meta struct {
	Fault agentapi.Fault `json:"fault"`
	// NetTarget is the namespace as the injectors' Locate takes it.
	NetTarget network.Target `json:"netTarget"`
}

// New opens the ledger in cfg.StateDir, takes over what a previous agent left in it (reverting
// expired faults, holding the others again) and starts the lease keeper. Close stops the keeper
// and leaves held faults applied: their leases still run.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("agent: a state directory is required (the node ledger lives there)")
	}
	if cfg.MaxLease <= 0 {
		cfg.MaxLease = 5 * time.Minute
	}
	if cfg.NetnsDir == "" {
		cfg.NetnsDir = network.DefaultNetnsDir
	}
	if cfg.Retain <= 0 {
		cfg.Retain = time.Hour
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent state directory: %w", err)
	}
	led, err := ledger.OpenFile(filepath.Join(cfg.StateDir, "ledger.db"))
	if err != nil {
		return nil, err
	}
	all := network.Injectors(network.NetnsDir(cfg.NetnsDir), network.SweepHostNamespace(false))
	all = append(all, proxy.NewLatencyInjector(), process.Kill{}, process.Pause{})
	reg, err := injectors.NewRegistry(all...)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, led: led, lw: led.Group(), reg: reg, m: m, faults: map[string]*held{}, kick: make(chan struct{}, 1)}
	if err := a.adopt(ctx); err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.keep(kctx)
	}()
	return a, nil
}

// Close stops the lease keeper. Held faults stay applied and in the ledger: the next agent on
// this node holds them again, or reverts them if their lease ran out meanwhile.
func (a *Agent) Close() {
	a.cancel()
	a.wg.Wait()
}

// Ledger names the agent's ledger file.
func (a *Agent) Ledger() string { return a.led.Where() }

func (a *Agent) env(runID string) injectors.Env {
	return injectors.Env{Logger: a.log, RunID: runID, Runbook: "agent"}
}

// List returns the faults held and those reverted within the retention, oldest first.
func (a *Agent) List() []agentapi.Fault {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]agentapi.Fault, 0, len(a.faults))
	for _, h := range a.faults {
		out = append(out, h.f)
	}
	sortFaults(out)
	return out
}

// Held counts the faults applied right now.
func (a *Agent) Held() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, h := range a.faults {
		if h.f.State == agentapi.StateApplied {
			n++
		}
	}
	return n
}

func (a *Agent) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// writeMeta stores the fault's current view in its ledger entry; the caller holds its locks.
func (a *Agent) writeMeta(ctx context.Context, h *held, fn func(*ledger.Entry)) error {
	a.mu.Lock()
	mb, err := json.Marshal(meta{Fault: h.f, NetTarget: h.target})
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode fault %s: %w", h.f.ID, err)
	}
	err = a.lw.Modify(ctx, h.f.ID, func(e *ledger.Entry) {
		e.Meta = mb
		if fn != nil {
			fn(e)
		}
	})
	if err != nil {
		a.m.errors.WithLabelValues("ledger").Inc()
	}
	return err
}
