package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// Kill is the process-kill injector: a signal (SIGKILL by default), once or every interval.
type Kill struct{}

// Kind implements injectors.Injector.
func (Kill) Kind() string { return "process-kill" }

type killAction struct {
	spec   runbooks.ProcessKill
	env    injectors.Env
	sig    syscall.Signal
	picked []proc
	rng    *rand.Rand
}

// Prepare implements injectors.Injector.
func (Kill) Prepare(_ context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	spec := *f.ProcessKill
	sig := syscall.SIGKILL
	if spec.Signal != "" {
		s, ok := runbooks.Signal(spec.Signal)
		if !ok {
			return nil, fmt.Errorf("unsupported signal %q", spec.Signal)
		}
		sig = s
	}
	all, err := candidates(spec.ProcessTarget)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, policy.Refusef("target", "no running process matches %s", targetText(spec.ProcessTarget))
	}
	rng := newRand()
	picked, err := choose(all, spec.ProcessTarget, env.Policy, rng)
	if err != nil {
		return nil, err
	}
	return &killAction{spec: spec, env: env, sig: sig, picked: picked, rng: rng}, nil
}

func (a *killAction) Targets() []string { return describe(a.picked) }

// Record has nothing to undo: a kill is not revertible, but the ledger still says who was hit.
func (a *killAction) Record() (json.RawMessage, error) {
	return json.Marshal(map[string]any{"signal": a.sig.String(), "procs": a.picked})
}

func (a *killAction) Apply(context.Context, injectors.Recorder) error {
	return a.signal(a.picked)
}

func (a *killAction) signal(ps []proc) error {
	var errs []error
	for _, p := range ps {
		if !p.same() {
			continue
		}
		if err := syscall.Kill(p.PID, a.sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("%s %s: %w", a.sig, p, err))
		}
	}
	return errors.Join(errs...)
}

func (a *killAction) Describe() []string {
	return []string{fmt.Sprintf("%s to %d process(es)", a.sig, len(a.picked))}
}

// Sustain keeps killing every interval, choosing afresh each time: the replacement a supervisor
// started is a new target, the way chaos monkey keeps hitting a service.
func (a *killAction) Sustain(ctx context.Context, _ injectors.Recorder, report func(injectors.Event)) error {
	if a.spec.Interval == 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(a.spec.Interval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		all, err := candidates(a.spec.ProcessTarget)
		if err != nil || len(all) == 0 {
			report(injectors.Event{Time: time.Now(), Message: "no process to signal this round"})
			continue
		}
		picked, err := choose(all, a.spec.ProcessTarget, a.env.Policy, a.rng)
		if err != nil {
			return err
		}
		if err := a.signal(picked); err != nil {
			return err
		}
		report(injectors.Event{Time: time.Now(), Message: a.sig.String() + " sent", Targets: describe(picked)})
	}
}

// Revert implements injectors.Injector; a signal cannot be taken back.
func (Kill) Revert(context.Context, json.RawMessage, injectors.Env) error { return nil }
