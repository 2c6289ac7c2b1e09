package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// Pause is the process-pause injector: SIGSTOP for the window, SIGCONT on revert.
type Pause struct{}

// Kind implements injectors.Injector.
func (Pause) Kind() string { return "process-pause" }

type pauseRecord struct {
	Procs []proc `json:"procs"`
}

type pauseAction struct{ rec pauseRecord }

// Prepare implements injectors.Injector.
func (Pause) Prepare(_ context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	spec := f.ProcessPause
	all, err := candidates(spec.ProcessTarget)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, policy.Refusef("target", "no running process matches %s", targetText(spec.ProcessTarget))
	}
	picked, err := choose(all, spec.ProcessTarget, env.Policy, newRand())
	if err != nil {
		return nil, err
	}
	return &pauseAction{rec: pauseRecord{Procs: picked}}, nil
}

func (a *pauseAction) Targets() []string { return describe(a.rec.Procs) }

func (a *pauseAction) Record() (json.RawMessage, error) { return json.Marshal(a.rec) }

func (a *pauseAction) Apply(context.Context, injectors.Recorder) error {
	var errs []error
	for _, p := range a.rec.Procs {
		if !p.same() {
			errs = append(errs, fmt.Errorf("%s exited before it could be paused", p))
			continue
		}
		if err := syscall.Kill(p.PID, syscall.SIGSTOP); err != nil {
			errs = append(errs, fmt.Errorf("SIGSTOP %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func (a *pauseAction) Describe() []string {
	out := make([]string, len(a.rec.Procs))
	for i, p := range a.rec.Procs {
		out[i] = "SIGSTOP " + p.String()
	}
	return out
}

// Revert implements injectors.Injector: SIGCONT every recorded process that is still the same
// process, in parallel (a game day may pause hundreds).
func (Pause) Revert(_ context.Context, record json.RawMessage, _ injectors.Env) error {
	var rec pauseRecord
	if err := json.Unmarshal(record, &rec); err != nil {
		return fmt.Errorf("decode process-pause record: %w", err)
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, p := range rec.Procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !p.same() {
				return // exited (or pid reused): nothing of ours to resume
			}
			if err := syscall.Kill(p.PID, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("SIGCONT %s: %w", p, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func targetText(t runbooks.ProcessTarget) string {
	if t.PidFile != "" {
		return "pidFile " + t.PidFile
	}
	return fmt.Sprintf("exe %q", t.Exe)
}
