// Package injectors defines how a fault spec becomes an applied, revertible fault, and the registry
// that maps a runbook's fault kind to the injector that handles it. The engine knows only this
// package; each kind lives in its own file or sub-package.
package injectors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/runbooks"
)

// Env is what the outside world gives an injector: the policy it must respect, a logger and the
// run's identity. Fields for other backends (a Kubernetes client, ...) are added here as they come.
type Env struct {
	Logger *slog.Logger
	// RunID identifies the run; injectors use it to name what they create (e.g. FAULTLINE-<id> chains).
	RunID string
	// Runbook is the runbook's metadata.name, recorded in the ledger with each fault.
	Runbook string
	Policy  runbooks.Policy
	// Environment is the runbook's declared environment; injectors that can verify it do.
	Environment runbooks.Environment
	// Kube is the Kubernetes client, resolved on first use (nil when none is configured: its
	// methods then return kubeclient.ErrNotConfigured).
	Kube *kubeclient.Client
	// Seed seeds this fault's random picks (which pods, which processes). The engine derives it
	// from the run's seed and the fault's place in the runbook, so that a dry run and a run with
	// the same seed pick the same targets from the same candidates.
	Seed uint64
}

// RandomPicker is implemented by actions whose targets were picked at random from more candidates
// than they touch. RandomPick says how ("pod pick is random (mode one)"), or "" when the pick took
// every candidate. A dry run prints it with the seed that repeats the pick.
type RandomPicker interface {
	RandomPick() string
}

// Injector handles one fault kind.
type Injector interface {
	// Kind is the name runbooks use, e.g. "process-pause".
	Kind() string
	// Prepare validates the spec against the live system and resolves its targets, with no side
	// effects. What it returns is what --dry-run prints.
	Prepare(ctx context.Context, f runbooks.Fault, env Env) (Action, error)
	// Revert undoes a fault from its ledger record alone, so that a different process (faultline
	// recover) can undo what a crashed run left behind. It must be idempotent and must also undo a
	// fault that was only partly applied, or not applied at all.
	Revert(ctx context.Context, record json.RawMessage, env Env) error
}

// Action is a prepared fault.
type Action interface {
	// Targets lists exactly what Apply will touch, in human-readable form ("pid 4242 (worker)").
	Targets() []string
	// Record is the revert state written durably to the ledger before Apply is called.
	Record() (json.RawMessage, error)
	// Apply injects the fault. An injector that learns more revert state while applying (an
	// original qdisc, a listener port) calls rec before the side effect that needs it undone.
	Apply(ctx context.Context, rec Recorder) error
}

// Recorder durably replaces the ledger record of the fault being applied.
type Recorder func(ctx context.Context, record json.RawMessage) error

// Sustainer is implemented by actions that keep acting during the fault window (a kill every
// interval, pods kept down). Sustain blocks until ctx ends; events it reports go to the result.
type Sustainer interface {
	Sustain(ctx context.Context, rec Recorder, report func(Event)) error
}

// RevertReporter is implemented by injectors whose revert has something to tell the result (the
// transparent latency proxy: how many relayed connections the revert closed). The engine calls
// RevertReport instead of Revert; it reverts exactly as Revert does, and its events go to the
// fault's result.
type RevertReporter interface {
	RevertReport(ctx context.Context, record json.RawMessage, env Env) ([]Event, error)
}

// Describer is implemented by actions that can say, in words a human reads, what they put in place
// (iptables rules, qdiscs, the latency mechanism chosen). It is called after Apply.
type Describer interface {
	Describe() []string
}

// MechanismReporter is implemented by actions that choose how to inject (the latency fault: netem
// or a transparent proxy). The choice is made in Prepare and must not change in Apply: the engine
// reads it once, after Prepare, and the result document records it.
type MechanismReporter interface {
	Mechanism() string
}

// Event is something an action did during the window, kept in the result document.
type Event struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	Targets []string  `json:"targets,omitempty"`
	// Subjects are Targets in structured form, for the recorders (e.g. the pods an interval
	// podKill deleted in a later round).
	Subjects []Target `json:"subjects,omitempty"`
}

// AgentKind is the registry kind of the injector that sends faults to hosts' agents (a fault with
// on:). The ledger records it rather than the fault's own kind, so that recover asks the agents.
const AgentKind = "agent"

// KindFor returns the registry kind of the injector that handles f.
func KindFor(f runbooks.Fault) string {
	if len(f.On) > 0 {
		return AgentKind
	}
	return f.Kind()
}

// Registry maps kinds to injectors. It is built once, by the command, from the injectors compiled
// in; there is no global registry.
type Registry struct {
	byKind map[string]Injector
}

// NewRegistry registers injectors; a kind registered twice is a programming error.
func NewRegistry(injs ...Injector) (*Registry, error) {
	r := &Registry{byKind: map[string]Injector{}}
	for _, inj := range injs {
		if _, dup := r.byKind[inj.Kind()]; dup {
			return nil, fmt.Errorf("injector kind %q registered twice", inj.Kind())
		}
		r.byKind[inj.Kind()] = inj
	}
	return r, nil
}

// ErrUnknownKind is returned for a kind no injector handles in this build.
var ErrUnknownKind = errors.New("unknown fault kind")

// Get returns the injector for kind.
func (r *Registry) Get(kind string) (Injector, error) {
	inj, ok := r.byKind[kind]
	if !ok {
		return nil, fmt.Errorf("%w %q (this build knows: %v)", ErrUnknownKind, kind, r.Kinds())
	}
	return inj, nil
}

// Kinds lists the registered kinds, sorted.
func (r *Registry) Kinds() []string {
	out := make([]string, 0, len(r.byKind))
	for k := range r.byKind {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Sweeper is implemented by injectors whose faults leave named artifacts on the system (iptables
// chains, qdiscs, listeners). `faultline recover` and every daemon start call Sweep to remove any
// artifact that no live ledger entry owns — the leftovers of a crash that happened before the
// ledger could say what was applied, or of an older faultline.
type Sweeper interface {
	// Sweep removes artifacts for which owned(runID) is false and returns what it removed.
	Sweep(ctx context.Context, owned func(runID string) bool, env Env) ([]string, error)
}

// SweepScoper is implemented by Sweepers of several kinds that sweep the same artifacts (every
// iptables kind sweeps every faultline chain). Recover sweeps each scope once.
type SweepScoper interface {
	SweepScope() string
}
