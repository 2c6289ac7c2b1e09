package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// haltTimeout bounds how long a standby waits for the leader to answer a halt it forwarded:
// long enough for a failover (the next leader answers after its recovery).
const haltTimeout = 90 * time.Second

// Halt implements Control; it returns once the run's faults are reverted. A standby hands the
// halt to the leader, which runs the run.
func (d *Daemon) Halt(ctx context.Context, runID, reason, who string) error {
	d.mu.Lock()
	r, ok := d.runs[runID]
	d.mu.Unlock()
	if ok {
		r.cancel(&experiments.HaltRequest{Source: "operator", Reason: fmt.Sprintf("%s (by %s)", reason, who)})
		<-r.done
		return nil
	}
	if d.o.Coordinator == nil || d.leader.Load() {
		return fmt.Errorf("%w: no active run %q", ErrNotFound, runID)
	}
	// The halt goes on if the caller hangs up: it is not the caller's to cancel.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), haltTimeout)
	defer cancel()
	_, err := d.o.Coordinator.RequestHalt(ctx, HaltRequest{RunID: runID, Reason: reason, Who: who, Via: d.o.Identity})
	return err
}

// HaltAll implements Control: the kill switch. On a standby it also waits for the leader to halt
// every run, so that the answer means the same on every replica behind a Service.
func (d *Daemon) HaltAll(ctx context.Context, reason, who string) ([]string, error) {
	halted := d.haltAll(&experiments.HaltRequest{Source: "operator", Reason: fmt.Sprintf("%s (kill switch, by %s)", reason, who)})
	if d.o.Coordinator == nil || d.leader.Load() {
		return halted, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), haltTimeout)
	defer cancel()
	more, err := d.o.Coordinator.RequestHalt(ctx, HaltRequest{Reason: reason, Who: who, Via: d.o.Identity})
	return append(halted, more...), err
}

// answerHalt is the leader's side of a halt a standby received.
func (d *Daemon) answerHalt(req HaltRequest) ([]string, error) {
	who := req.Who + " via " + req.Via
	if req.RunID == "" {
		return d.haltAll(&experiments.HaltRequest{Source: "operator", Reason: fmt.Sprintf("%s (kill switch, by %s)", req.Reason, who)}), nil
	}
	if err := d.Halt(context.Background(), req.RunID, req.Reason, who); err != nil {
		return nil, err
	}
	return []string{req.RunID}, nil
}

// Pause implements Control. With a Coordinator the switch is in the cluster, so it holds on
// whichever replica leads now or later.
func (d *Daemon) Pause(ctx context.Context, who string) error { return d.setPaused(ctx, true, who) }

// Resume implements Control.
func (d *Daemon) Resume(ctx context.Context, who string) error { return d.setPaused(ctx, false, who) }

func (d *Daemon) setPaused(ctx context.Context, on bool, who string) error {
	st := PauseState{Paused: on, By: who, At: time.Now()}
	if d.o.Coordinator != nil {
		if err := d.o.Coordinator.SetPaused(ctx, st); err != nil {
			return err
		}
	} else if d.o.PauseFile != "" {
		if err := writePauseFile(d.o.PauseFile, st); err != nil {
			return err
		}
	}
	d.paused.Store(on)
	return nil
}

// loadPauseFile restores a single daemon's pause switch; an unreadable file means paused, as an
// unreadable switch in the cluster does.
func (d *Daemon) loadPauseFile() {
	if d.o.Coordinator != nil || d.o.PauseFile == "" {
		return
	}
	b, err := os.ReadFile(d.o.PauseFile)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var st PauseState
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		d.log.Error("pause state unreadable; starting paused", "file", d.o.PauseFile, "err", err)
		d.paused.Store(true)
		return
	}
	d.paused.Store(st.Paused)
	if st.Paused {
		d.log.Info("starting paused, as before the restart", "by", st.By, "at", st.At)
	}
}

func writePauseFile(path string, st PauseState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write the pause state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync() // the answer promises the switch survives a crash
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write the pause state %s: %w", path, err)
	}
	return nil
}

// Paused implements Control.
func (d *Daemon) Paused() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.schedulingPaused(ctx)
}

// schedulingPaused is asked before every start. The cluster's switch is read each time; when it
// cannot be read the answer is paused: a start is not worth the risk of ignoring a pause.
func (d *Daemon) schedulingPaused(ctx context.Context) bool {
	if d.o.Coordinator == nil {
		return d.paused.Load()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := d.o.Coordinator.Paused(ctx)
	if err != nil {
		d.log.Error("pause state unreadable; treating scheduling as paused", "err", err)
		return true
	}
	d.paused.Store(st.Paused)
	return st.Paused
}

// recoverUntilDone reverts orphaned faults, retrying with backoff until it succeeds (true) or
// ctx ends (false). Meanwhile Recovery says why, and the metric shows it.
func (d *Daemon) recoverUntilDone(ctx context.Context, orphaned func(ledger.Owner) bool) bool {
	wait := d.o.RecoveryBackoff
	if wait <= 0 {
		wait = time.Second
	}
	for attempt := 1; ; attempt++ {
		err := d.recover(ctx, orphaned)
		if err == nil {
			d.setRecovery("")
			d.o.Metrics.RecoveryPending(false)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		msg := fmt.Sprintf("orphan recovery failed (attempt %d, next in %s): %v", attempt, wait, err)
		d.setRecovery(msg)
		d.o.Metrics.RecoveryPending(true)
		d.o.Metrics.RecoveryFailed()
		d.log.Error("orphan recovery failed; not scheduling until it succeeds", "attempt", attempt, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (d *Daemon) setRecovery(msg string) {
	d.mu.Lock()
	d.recovery = msg
	d.mu.Unlock()
}

// Recovery implements Control: empty, or why orphaned faults are not reverted yet.
func (d *Daemon) Recovery() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.recovery
}

// ObserveLeader records the Lease holder (the elector calls it on every change).
func (d *Daemon) ObserveLeader(holder string) {
	d.mu.Lock()
	d.leaderHolder = holder
	d.mu.Unlock()
}

// LeaderIdentity implements Control: who schedules, as far as this replica knows.
func (d *Daemon) LeaderIdentity() string {
	if d.o.Elect == nil || d.leader.Load() {
		return d.o.Identity
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return HolderIdentity(d.leaderHolder)
}

// priorStarts reads a schedule's starts of the last two days from cluster state or history, and
// counts them in runsToday too. Failure is logged: the cap then counts this process's starts.
func (d *Daemon) priorStarts(ctx context.Context, name string) []time.Time {
	if d.o.PriorStarts == nil {
		return nil
	}
	prior, err := d.o.PriorStarts(ctx, name, d.o.Clock.Now().Add(-48*time.Hour))
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			d.log.Error("earlier starts unreadable; the per-day cap counts this process's starts only", "schedule", name, "err", err)
		}
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range prior {
		dup := false
		for _, t := range d.today[name] {
			if t.Sub(p).Abs() < 5*time.Second {
				dup = true
				break
			}
		}
		if !dup {
			d.today[name] = append(d.today[name], p)
		}
	}
	return prior
}
