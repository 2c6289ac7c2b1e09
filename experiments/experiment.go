package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/load"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
	"github.com/faultline-dev/faultline/safety/ledger"
	"github.com/faultline-dev/faultline/safety/policy"
)

// live is a fault that has a ledger entry (and so must be reverted, applied or not).
type live struct {
	p       prepared
	entry   *ledger.Entry
	res     *FaultResult
	applied AppliedFault // what the recorders were told; set once Apply returned
	mu      sync.Mutex   // guards entry.Record, updated by the injector's Recorder
}

func (e *Engine) runExperiment(ctx context.Context, log *slog.Logger, x *runbooks.Experiment, objectives *runbooks.Objectives,
	env injectors.Env, guards, hyps []*guardrail.Guardrail, run *Result, hub *load.Hub) (er ExperimentResult) {
	// er is a named result so that the deferred bookkeeping below reaches the caller on every path.
	er = ExperimentResult{Name: x.Name, StartedAt: time.Now(), Verdict: Passed}
	log = log.With("experiment", x.Name)
	defer func() {
		er.EndedAt = time.Now()
		log.Info("experiment finished", "verdict", er.Verdict, "reason", er.Reason, "took", er.EndedAt.Sub(er.StartedAt))
	}()
	glog, hlog := newObsLog(guards, e), newObsLog(hyps, e)
	defer func() { er.Guardrails, er.Hypothesis = glog.results(), hlog.results() }()
	end := func(v Verdict, format string, args ...any) ExperimentResult {
		er.Verdict, er.Reason = v, fmt.Sprintf(format, args...)
		return er
	}

	acts, err := e.prepare(ctx, *x, env)
	if err != nil {
		return end(classify(err), "%v", err)
	}
	for _, a := range acts {
		fr := FaultResult{Name: a.fault.Name, Kind: a.fault.Kind(), Targets: a.act.Targets()}
		// Read at Prepare, where the choice is made, so that a fault whose Apply fails still
		// says which mechanism failed.
		if m, ok := a.act.(injectors.MechanismReporter); ok {
			fr.Mechanism = m.Mechanism()
		}
		if r, ok := a.act.(injectors.RandomPicker); ok {
			fr.Random = r.RandomPick()
		}
		er.Faults = append(er.Faults, fr)
	}
	if err := e.checkConflicts(ctx, acts); err != nil {
		return end(classify(err), "%v", err)
	}

	if x.Load != nil {
		g, v, err := e.startLoad(ctx, x.Name, *x.Load, hub)
		if err != nil {
			return end(*v, "%v", err)
		}
		defer func() { er.Load = e.stopLoad(g, hub) }()
	}
	e.progress(Progress{Phase: "steady-state", RunID: env.RunID, Experiment: x.Name, Since: time.Now()})
	okG := guardrail.CheckAll(ctx, guards, glog.observer("steady-state"))
	okH := guardrail.CheckAll(ctx, hyps, hlog.observer("steady-state"))
	if ctx.Err() != nil {
		run.Halt = haltFromCause(ctx)
		return end(Halted, "halted before injection: %s", run.Halt.Reason)
	}
	if !okG || !okH {
		return end(NotStarted, "steady state did not hold (%s); nothing was injected", strings.Join(append(glog.failing(), hlog.failing()...), "; "))
	}

	sessions, err := e.startRecorders(ctx, x, env)
	if err != nil {
		return end(Aborted, "start recorder: %v; nothing was injected", err)
	}

	// The window context ends with a cause: the duration elapsed, a guardrail breached, a
	// sustainer failed, or the run's own context was cancelled (signal, halt, window end).
	window, cancelWindow := context.WithCancelCause(ctx)
	defer cancelWindow(nil)
	e.progress(Progress{Phase: "inject", RunID: env.RunID, Experiment: x.Name, Since: time.Now()})
	lives, injectErr := e.inject(window, x, env, acts, er.Faults, sessions)
	if injectErr != nil {
		cancelWindow(injectErr)
	}

	var wg sync.WaitGroup
	var breachMu sync.Mutex
	var hypBreaches []string
	var detect detector
	if injectErr == nil && window.Err() == nil {
		e.progress(Progress{Phase: "observe", RunID: env.RunID, Experiment: x.Name, Since: time.Now(), Duration: x.Duration.D()})
		wg.Add(2)
		go func() {
			defer wg.Done()
			guardrail.Watch(window, guards, glog.observer("during"), func(b guardrail.Breach) {
				e.Metrics.Breach(b.Guardrail, b.Kind)
				glog.markBreached(b.Guardrail)
				detect.breach("guardrail", b)
				// Only the first cause sticks, so the halt names the guardrail that tripped first.
				cancelWindow(&breachCause{b})
			})
		}()
		go func() {
			defer wg.Done()
			guardrail.Watch(window, hyps, hlog.observer("during"), func(b guardrail.Breach) {
				e.Metrics.Breach(b.Guardrail, b.Kind)
				hlog.markBreached(b.Guardrail)
				detect.breach("hypothesis", b)
				breachMu.Lock()
				hypBreaches = append(hypBreaches, fmt.Sprintf("%s: %s", b.Guardrail, b.Last.Detail))
				breachMu.Unlock()
			})
		}()
		for _, l := range lives {
			s, ok := l.p.act.(injectors.Sustainer)
			if !ok {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Sustain(window, e.recorder(l), func(ev injectors.Event) {
					l.mu.Lock()
					l.res.Events = append(l.res.Events, ev)
					l.mu.Unlock()
					// The recorders must know about later rounds too (pods an interval podKill
					// deletes after its first round), or they record them as not targeted.
					for _, s := range sessions {
						s.FaultEvent(l.applied, ev)
					}
				})
				if err != nil && window.Err() == nil {
					cancelWindow(fmt.Errorf("fault %q: %w", l.p.fault.Name, err))
				}
			}()
		}
		timer := time.NewTimer(x.Duration.D())
		select {
		case <-timer.C:
			cancelWindow(errWindowEnded)
		case <-window.Done():
		}
		timer.Stop()
	}
	cause := context.Cause(window)
	haltAt := time.Now()
	if bc, ok := cause.(*breachCause); ok {
		haltAt = bc.b.At
	}

	// Revert with a context of its own: the run's may be cancelled already, and a revert that
	// gives up because someone pressed ^C is the failure this tool exists to prevent.
	e.progress(Progress{Phase: "revert", RunID: env.RunID, Experiment: x.Name, Since: time.Now()})
	lastRevert, revertErr, ledgerErr := e.revertAll(ctx, env, lives)
	wg.Wait()

	var bc *breachCause
	switch {
	case revertErr != nil:
		er.Verdict, er.Reason = RevertIncomplete, fmt.Sprintf("%v; the ledger lists what remains: run faultline recover", revertErr)
	case injectErr != nil:
		er.Verdict, er.Reason = Aborted, fmt.Sprintf("%v (everything applied was reverted)", injectErr)
	case errors.As(cause, &bc):
		v := bc.b.Last.Value
		run.Halt = &Halt{At: haltAt, Source: "guardrail", Guardrail: bc.b.Guardrail, Value: v, Detail: bc.b.Last.Detail,
			Reason: fmt.Sprintf("guardrail %q breached: %s", bc.b.Guardrail, bc.b.Last.Detail)}
		er.Verdict, er.Reason = Halted, run.Halt.Reason+" (all faults reverted)"
	case ctx.Err() != nil:
		run.Halt = haltFromCause(ctx)
		run.Halt.At = haltAt
		er.Verdict, er.Reason = Halted, run.Halt.Reason+" (all faults reverted)"
	case cause != nil && !errors.Is(cause, errWindowEnded):
		er.Verdict, er.Reason = Aborted, fmt.Sprintf("%v (all faults reverted)", cause)
	case len(hypBreaches) > 0:
		er.Verdict, er.Reason = Failed, "hypothesis deviated: "+strings.Join(hypBreaches, "; ")
	}
	if run.Halt != nil && er.Verdict == Halted && !lastRevert.IsZero() {
		run.Halt.LastRevertedAt = &lastRevert
		e.Metrics.HaltLatency(lastRevert.Sub(run.Halt.At))
	}

	// After phase: the guardrails must hold again. Skipped when the run itself was stopped.
	if ctx.Err() == nil && len(guards) > 0 && er.Verdict != RevertIncomplete {
		within := e.RecoveryWindow
		if within == 0 {
			within = 30 * time.Second
		}
		if x.Recovery != nil {
			within = x.Recovery.Within.D()
		}
		e.progress(Progress{Phase: "after", RunID: env.RunID, Experiment: x.Name, Since: time.Now(), Duration: within})
		actx, cancel := context.WithTimeout(ctx, within)
		at, ok := guardrail.WaitHealthy(actx, guards, glog.observer("after"))
		cancel()
		rr := &RecoveryResult{Within: within.String(), Recovered: ok}
		if ok {
			rr.HealthyAt = &at
			from := lastRevert
			if from.IsZero() {
				from = at
			}
			rr.TimeToRecover = at.Sub(from).Round(time.Millisecond).String()
		} else if er.Verdict == Passed || er.Verdict == Failed {
			msg := fmt.Sprintf("guardrails did not hold again within %s after revert (%s)", within, strings.Join(glog.failing(), "; "))
			if er.Verdict == Failed {
				er.Reason += "; " + msg
			} else {
				er.Reason = msg
			}
			er.Verdict = Failed
		}
		er.Recovery = rr
	}
	first := firstApplied(lives)
	e.finishRecorders(ctx, x, &er, sessions, RecordingEnd{FirstFaultAt: first, RevertedAt: lastRevert, Objectives: objectives})
	if !first.IsZero() {
		er.Figures = append(er.Figures, detect.figure(first, guards, hyps))
		er.Figures = append(er.Figures, e.budgets(ctx, log, guards, first, time.Now())...)
	}
	judgeObjectives(objectives, &er)
	if ledgerErr != nil {
		// A passed verdict over a ledger that still lists the faults as applied would leave the
		// next run refused with no explanation.
		msg := fmt.Sprintf("faults reverted, but the ledger could not record it (%v): the next run on these targets is refused until `faultline recover` marks them reverted", ledgerErr)
		if er.Reason != "" {
			msg = er.Reason + "; " + msg
		}
		er.Verdict, er.Reason = Worse(er.Verdict, Aborted), msg
	}
	return er
}

// session is a started recorder session with its recorder's name.
type session struct {
	name string
	RecorderSession
}

func (e *Engine) startRecorders(ctx context.Context, x *runbooks.Experiment, env injectors.Env) ([]session, error) {
	var out []session
	for _, r := range e.Recorders {
		s, err := r.Start(ctx, x, env)
		if err != nil {
			// Finish what already started, so that no watch outlives the experiment.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			for _, o := range out {
				o.Finish(cctx, RecordingEnd{})
			}
			return nil, fmt.Errorf("%s: %w", r.Name(), err)
		}
		if s != nil {
			out = append(out, session{r.Name(), s})
		}
	}
	return out, nil
}

// firstApplied is when the first fault was applied; zero when none was.
func firstApplied(lives []*live) time.Time {
	var first time.Time
	for _, l := range lives {
		if at := l.applied.At; !at.IsZero() && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

// finishRecorders waits for each recording, bounded by the experiment's recovery objective (or
// the default recovery window), and fails a passing experiment whose recovery was too slow.
func (e *Engine) finishRecorders(ctx context.Context, x *runbooks.Experiment, er *ExperimentResult, sessions []session, end RecordingEnd) {
	if len(sessions) == 0 {
		return
	}
	within := e.RecoveryWindow
	if within == 0 {
		within = 30 * time.Second
	}
	if x.Recovery != nil {
		within = x.Recovery.Within.D()
	}
	from := end.RevertedAt
	if from.IsZero() {
		from = time.Now()
	}
	// A recorder keeps watching until the slowest objective could still be met.
	fctx, cancel := context.WithDeadline(ctx, from.Add(max(within, objectiveHorizon(end.Objectives))))
	defer cancel()
	for _, s := range sessions {
		rec := s.Finish(fctx, end)
		if rec.Recorder == "" {
			rec.Recorder = s.name
		}
		er.Recordings = append(er.Recordings, rec)
		if !rec.Recovered && (er.Verdict == Passed || er.Verdict == Failed) {
			msg := fmt.Sprintf("%s did not recover within %s: %s", rec.Recorder, within, rec.Reason)
			if er.Verdict == Failed {
				er.Reason += "; " + msg
			} else {
				er.Reason = msg
			}
			er.Verdict = Failed
		}
	}
}

// checkConflicts refuses to start while the ledger holds un-reverted faults on the same targets.
func (e *Engine) checkConflicts(ctx context.Context, acts []prepared) error {
	open, err := ledger.OpenEntries(ctx, e.Ledger)
	if err != nil {
		return fmt.Errorf("read ledger (nothing was injected): %w", err)
	}
	for _, a := range acts {
		for _, t := range a.act.Targets() {
			for _, o := range open {
				if o.Kind != a.inj.Kind() || !slices.Contains(o.Targets, t) {
					continue
				}
				if o.Owner.Alive() {
					return policy.Refusef("ledger", "%s is already under a %s fault by run %s (pid %d), which is still running", t, o.Kind, o.RunID, o.Owner.PID)
				}
				return policy.Refusef("ledger", "%s still has an un-reverted %s fault from run %s (ledger entry %s): run `faultline recover` first", t, o.Kind, o.RunID, o.ID)
			}
		}
	}
	return nil
}

// inject records and applies each fault in order. It stops at the first failure or when the window
// ends; whatever has a ledger entry is returned for revert.
func (e *Engine) inject(ctx context.Context, x *runbooks.Experiment, env injectors.Env, acts []prepared, results []FaultResult, sessions []session) ([]*live, error) {
	var lives []*live
	owner := e.Owner
	if owner.PID == 0 {
		owner = ledger.Self()
	}
	for i, a := range acts {
		if ctx.Err() != nil {
			return lives, nil
		}
		rec, err := a.act.Record()
		if err != nil {
			return lives, fmt.Errorf("fault %q: build ledger record: %w", a.fault.Name, err)
		}
		now := time.Now()
		entry := &ledger.Entry{
			ID: fmt.Sprintf("%s-%s-%02d", env.RunID, x.Name, i), RunID: env.RunID, Runbook: env.Runbook,
			Experiment: x.Name, Fault: a.fault.Name, Kind: a.inj.Kind(), Targets: a.act.Targets(),
			State: ledger.StateRecorded, Record: rec, Owner: owner, RecordedAt: now,
		}
		e.hook("before-record")
		if err := e.Ledger.Put(ctx, entry); err != nil {
			return lives, fmt.Errorf("fault %q not applied: %w", a.fault.Name, err)
		}
		l := &live{p: a, entry: entry, res: &results[i]}
		l.res.LedgerID, l.res.RecordedAt = entry.ID, &now
		lives = append(lives, l)
		e.hook("after-record")
		if err := a.act.Apply(ctx, e.recorder(l)); err != nil {
			l.res.Error = err.Error()
			return lives, fmt.Errorf("apply fault %q: %w", a.fault.Name, err)
		}
		e.Metrics.FaultApplied(a.fault.Kind())
		applied := time.Now()
		l.applied = AppliedFault{Name: a.fault.Name, Kind: a.fault.Kind(), Described: a.act.Targets(), At: applied}
		if tl, ok := a.act.(injectors.TargetLister); ok {
			l.applied.Targets = tl.TargetRefs()
		}
		for _, s := range sessions {
			s.FaultApplied(l.applied)
		}
		l.res.AppliedAt = &applied
		if d, ok := a.act.(injectors.Describer); ok {
			l.res.Applied = d.Describe()
		}
		e.hook("after-apply")
		if err := e.Ledger.Modify(ctx, entry.ID, func(en *ledger.Entry) { en.State, en.AppliedAt = ledger.StateApplied, &applied }); err != nil {
			return lives, fmt.Errorf("fault %q applied but the ledger could not be updated: %w", a.fault.Name, err)
		}
	}
	return lives, nil
}

// recorder lets an injector replace its ledger record mid-apply, durably, before the next side effect.
func (e *Engine) recorder(l *live) injectors.Recorder {
	return func(ctx context.Context, rec json.RawMessage) error {
		l.mu.Lock()
		l.entry.Record = append(json.RawMessage(nil), rec...)
		l.mu.Unlock()
		return e.Ledger.Modify(ctx, l.entry.ID, func(en *ledger.Entry) { en.Record = rec })
	}
}

// revertAll reverts every live fault in parallel with a fresh context, then marks the ledger in one
// commit. Each fault is stamped with the time its own revert finished, because a fault held by a
// slow revert stayed in place longer than the others; the time returned is when the last revert
// finished, which is what halt latency is measured to.
// A failure to record the reverts in the ledger is returned apart (ledgerErr): the faults are gone
// but the ledger still lists them.
func (e *Engine) revertAll(ctx context.Context, env injectors.Env, lives []*live) (last time.Time, revertErr, ledgerErr error) {
	if len(lives) == 0 {
		return time.Time{}, nil, nil
	}
	timeout := e.RevertTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	errs := make([]error, len(lives))
	finished := make([]time.Time, len(lives))
	var wg sync.WaitGroup
	for i, l := range lives {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.mu.Lock()
			rec := l.entry.Record
			l.mu.Unlock()
			if rr, ok := l.p.inj.(injectors.RevertReporter); ok {
				var evs []injectors.Event
				evs, errs[i] = rr.RevertReport(rctx, rec, env)
				l.mu.Lock()
				l.res.Events = append(l.res.Events, evs...)
				l.mu.Unlock()
			} else {
				errs[i] = l.p.inj.Revert(rctx, rec, env)
			}
			finished[i] = time.Now()
		}()
	}
	wg.Wait()
	var failed []error
	for i, l := range lives {
		if finished[i].After(last) {
			last = finished[i]
		}
		if errs[i] != nil {
			l.entry.State, l.entry.LastError = ledger.StateRevertFailed, errs[i].Error()
			l.res.Error = "revert: " + errs[i].Error()
			failed = append(failed, fmt.Errorf("revert fault %q: %w", l.p.fault.Name, errs[i]))
		} else {
			at := finished[i]
			l.entry.State, l.entry.RevertedAt = ledger.StateReverted, &at
			l.res.RevertedAt = &at
		}
		if l.res.AppliedAt != nil {
			e.Metrics.FaultReverted(l.p.fault.Kind(), errs[i] == nil)
		}
	}
	entries := make([]*ledger.Entry, len(lives))
	for i, l := range lives {
		entries[i] = l.entry
	}
	if err := e.Ledger.Put(rctx, entries...); err != nil {
		// Only the record of the reverts is missing. recover will revert again, which is harmless
		// because reverts are idempotent, and then marks the entries reverted.
		e.logger().Error("faults reverted but the ledger could not be updated", "err", err)
		ledgerErr = fmt.Errorf("write ledger %s: %w", e.Ledger.Where(), err)
	}
	if open, err := ledger.OpenEntries(rctx, e.Ledger); err == nil {
		e.Metrics.LedgerOutstanding(len(open))
	}
	return last, errors.Join(failed...), ledgerErr
}
