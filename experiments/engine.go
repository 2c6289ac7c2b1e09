// Package experiments is the lifecycle engine: preflight, steady state, inject, observe, revert,
// verdict. It knows injectors and guardrails only through their interfaces.
package experiments

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/metrics"
	"github.com/faultline-dev/faultline/load"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
	"github.com/faultline-dev/faultline/safety/ledger"
	"github.com/faultline-dev/faultline/safety/policy"
)

// Engine runs runbooks. Build one per process; Run may be called concurrently (the daemon does).
type Engine struct {
	Injectors *injectors.Registry
	Probes    guardrail.Probes
	ProbeEnv  guardrail.ProbeEnv
	// InjectorEnv is the base environment handed to injectors; RunID, Policy and Environment are
	// filled in per run.
	InjectorEnv injectors.Env
	Ledger      ledger.Ledger
	Logger      *slog.Logger
	Metrics     *metrics.Metrics
	// Preflight checks run before anything is resolved or touched (host allow-list, golden-copy
	// guard); a *policy.RefusedError from one refuses the run with exit 4.
	Preflight []Preflight
	// Recorders watch how the system recovers; each gets a session per experiment.
	Recorders []Recorder
	// Progress, when set, is told about phase changes and observations (the TTY status line).
	Progress func(Progress)
	// Hook is called at named points of the inject path: "before-record", "after-record" and
	// "after-apply". Crash-safety tests use it to stop the process exactly there; nil otherwise.
	Hook func(point string)
	// Owner is written into ledger entries; zero means this process (ledger.Self). The daemon
	// sets its replica identity so that a new leader can tell a dead replica's faults.
	Owner ledger.Owner
	// RevertTimeout bounds the revert of one experiment's faults (default 2m).
	RevertTimeout time.Duration
	// RecoveryWindow is the after-phase window used when an experiment sets no recovery (default 30s).
	RecoveryWindow time.Duration
	// Version is faultline's version, written into each result document.
	Version string
}

// Preflight is a check made before a run touches anything.
type Preflight func(ctx context.Context, rb *runbooks.Runbook) error

// HaltRequest is the cause attached to a cancelled run context when someone asked to halt
// (a signal, `faultline halt`, the daemon's API or the end of a schedule window).
type HaltRequest struct {
	Source string // signal, operator, window
	Reason string
}

func (h *HaltRequest) Error() string {
	return fmt.Sprintf("halt requested (%s): %s", h.Source, h.Reason)
}

// breachCause cancels the fault window when a guardrail breaches.
type breachCause struct{ b guardrail.Breach }

func (c *breachCause) Error() string { return "guardrail " + c.b.Guardrail + " breached" }

var errWindowEnded = errors.New("fault window ended")

// RunOptions vary one run.
type RunOptions struct {
	RunID  string
	DryRun bool
	// Seed seeds the random picks of targets (pods, processes); nil draws one, which the result
	// records so that the same picks can be made again.
	Seed *uint64
}

// NewSeed returns a random seed below 2^53, so that it survives JSON tools that read numbers as
// doubles (jq), and never 0.
func NewSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])%(1<<53-1) + 1
}

// faultSeed derives a fault's seed from the run's and the fault's place, so that two faults of a
// run do not pick in lockstep and a prepare repeated before injecting picks as the first did.
func faultSeed(seed uint64, experiment string, fault int) uint64 {
	h := fnv.New64a()
	_ = binary.Write(h, binary.BigEndian, seed)
	_, _ = h.Write([]byte(experiment))
	_ = binary.Write(h, binary.BigEndian, int64(fault))
	return h.Sum64()
}

// NewRunID returns a short random run ID; short because injectors embed it in names with tight
// limits (iptables chain names are at most 28 characters).
func NewRunID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run executes a validated runbook and returns its result; it never returns with a fault applied
// unless the result says revert-incomplete (and the ledger lists what remains).
func (e *Engine) Run(ctx context.Context, rb *runbooks.Runbook, opts RunOptions) *Result {
	if opts.RunID == "" {
		opts.RunID = NewRunID()
	}
	if opts.Seed == nil {
		s := NewSeed()
		opts.Seed = &s
	}
	res := &Result{RunID: opts.RunID, Seed: opts.Seed, Runbook: rb.Metadata.Name, Environment: rb.Environment.Name, StartedAt: time.Now(), Verdict: Passed}
	e.stamp(res, rb)
	log := e.logger().With("run", opts.RunID, "runbook", rb.Metadata.Name)
	defer func() {
		res.EndedAt = time.Now()
		res.ExitCode = res.Verdict.ExitCode()
		log.Info("run finished", "verdict", res.Verdict, "exit", res.ExitCode, "reason", res.Reason)
	}()

	fail := func(v Verdict, err error) *Result {
		res.Verdict, res.Reason = v, err.Error()
		return res
	}
	e.progress(Progress{Phase: "preflight", RunID: opts.RunID})
	for _, pf := range e.Preflight {
		if err := pf(ctx, rb); err != nil {
			return fail(classify(err), fmt.Errorf("preflight: %w", err))
		}
	}
	hub := &load.Hub{}
	penv := e.probeEnvFor(hub)
	guards, err := guardrail.Compile(rb.Guardrails, e.Probes, penv)
	if err != nil {
		return fail(Refused, err)
	}
	hyps := make([][]*guardrail.Guardrail, len(rb.Experiments))
	for i, x := range rb.Experiments {
		if hyps[i], err = guardrail.Compile(x.Hypothesis, e.Probes, penv); err != nil {
			return fail(Refused, fmt.Errorf("experiment %q: %w", x.Name, err))
		}
	}
	env := e.InjectorEnv
	env.RunID, env.Policy, env.Environment = opts.RunID, rb.Policy, rb.Environment
	env.Runbook, env.Seed = rb.Metadata.Name, *opts.Seed
	if env.Logger == nil {
		env.Logger = log
	}
	// Every experiment is prepared up front so that a policy refusal in the third experiment
	// stops the run before the first one touches anything. Targets are resolved again right
	// before each experiment injects, because processes and pods come and go.
	for i := range rb.Experiments {
		acts, err := e.prepare(ctx, rb.Experiments[i], env)
		if err != nil {
			return fail(classify(err), fmt.Errorf("experiment %q: %w", rb.Experiments[i].Name, err))
		}
		if opts.DryRun {
			res.Plan = append(res.Plan, plan(rb.Experiments[i], acts, guards, hyps[i]))
		}
	}
	if opts.DryRun {
		res.Verdict = DryRun
		return res
	}
	if rb.Load != nil {
		g, v, err := e.startLoad(ctx, rb.Metadata.Name, *rb.Load, hub)
		if err != nil {
			return fail(*v, err)
		}
		defer func() {
			res.Load = e.stopLoad(g, hub)
			for i := range res.Experiments {
				if res.Experiments[i].Load == nil {
					res.Experiments[i].Load = res.Load.Slice(res.Experiments[i].StartedAt, res.Experiments[i].EndedAt)
				}
			}
		}()
	}
	for i := range rb.Experiments {
		x := &rb.Experiments[i]
		er := e.runExperiment(ctx, log, x, rb.ObjectivesFor(i), env, guards, hyps[i], res, hub)
		res.Experiments = append(res.Experiments, er)
		e.Metrics.Experiment(string(er.Verdict))
		res.Verdict = Worse(res.Verdict, er.Verdict)
		if er.Verdict != Passed && er.Verdict != Failed {
			res.Reason = fmt.Sprintf("experiment %q %s: %s", er.Name, er.Verdict, er.Reason)
			break
		}
		if er.Verdict == Failed && res.Reason == "" {
			res.Reason = fmt.Sprintf("experiment %q failed: %s", er.Name, er.Reason)
		}
		if i < len(rb.Experiments)-1 && x.PauseAfter > 0 {
			e.progress(Progress{Phase: "pause", RunID: opts.RunID, Experiment: x.Name, Duration: x.PauseAfter.D(), Since: time.Now()})
			if err := waitCtx(ctx, x.PauseAfter.D()); err != nil {
				res.Verdict = Worse(res.Verdict, Halted)
				res.Halt = haltFromCause(ctx)
				res.Reason = "halted between experiments: " + res.Halt.Reason
				break
			}
		}
	}
	return res
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.Default()
	}
	return e.Logger
}

func (e *Engine) progress(p Progress) {
	if e.Progress != nil {
		e.Progress(p)
	}
}

func (e *Engine) hook(point string) {
	if e.Hook != nil {
		e.Hook(point)
	}
}

// prepared pairs an action with its fault.
type prepared struct {
	fault runbooks.Fault
	inj   injectors.Injector
	act   injectors.Action
}

func (e *Engine) prepare(ctx context.Context, x runbooks.Experiment, env injectors.Env) ([]prepared, error) {
	out := make([]prepared, 0, len(x.Faults))
	seed := env.Seed
	for i, f := range x.Faults {
		inj, err := e.Injectors.Get(injectors.KindFor(f))
		if err != nil {
			return nil, &policy.RefusedError{Rule: "fault kind", Msg: err.Error()}
		}
		env.Seed = faultSeed(seed, x.Name, i)
		act, err := inj.Prepare(ctx, f, env)
		if src, ok := f.Source(); ok && err != nil {
			// What only the live system can tell (a namespace that does not exist) points at the
			// runbook line of the fault, like validate's errors.
			return nil, fmt.Errorf("%s (%s): %w", src, f.Kind(), err)
		}
		if err != nil {
			return nil, fmt.Errorf("fault %q (%s): %w", f.Name, f.Kind(), err)
		}
		out = append(out, prepared{fault: f, inj: inj, act: act})
	}
	return out, nil
}

// classify maps an error before injection to a verdict: refusals are exit 4, the rest exit 5.
func classify(err error) Verdict {
	var r *policy.RefusedError
	if errors.As(err, &r) {
		return Refused
	}
	return Aborted
}

func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func haltFromCause(ctx context.Context) *Halt {
	h := &Halt{At: time.Now(), Source: "signal", Reason: "context cancelled"}
	var hr *HaltRequest
	if errors.As(context.Cause(ctx), &hr) {
		h.Source, h.Reason = hr.Source, hr.Reason
	} else if c := context.Cause(ctx); c != nil {
		h.Reason = c.Error()
	}
	return h
}
