package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/experiments/schedule"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/metrics"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// Results stores finished runs (the history store implements it).
type Results interface {
	Put(ctx context.Context, sum RunSummary, res *experiments.Result) error
}

// Claimer makes a scheduled start happen once across replicas: Claim succeeds for exactly one
// caller per (schedule, start time). Nil means a single replica, where claims are not needed.
type Claimer interface {
	Claim(ctx context.Context, schedule string, at time.Time, by string) (bool, error)
}

// Options are the daemon's parts, assembled by the command.
type Options struct {
	// Config is the config the daemon starts with. Its schedules and runbooks are replaced by
	// Reload; the rest (API, ledger, leader election, history) is read at start only.
	Config *LoadedConfig
	// ConfigPath is the file Reload reads again; empty means the config cannot be reloaded.
	ConfigPath string
	Engine     *experiments.Engine // its Ledger is the daemon's ledger
	Registry   *injectors.Registry
	Env        injectors.Env
	Results    Results
	Claimer    Claimer
	Clock      schedule.Clock
	Logger     *slog.Logger
	Metrics    *metrics.Daemon
	// ReloadMetrics count reloads; may be nil.
	ReloadMetrics *metrics.Reload
	// Identity names this replica in ledger entries, claims and the Lease.
	Identity string
	// Elect runs leader election: it calls lead with a context that ends when leadership is lost,
	// and returns when ctx ends. Nil means this replica always leads (a single daemon).
	Elect func(ctx context.Context, lead func(ctx context.Context)) error
	// Orphaned reports whether a ledger entry's owner is gone (used when taking the lead).
	// Nil means the local process check.
	Orphaned func(ledger.Owner) bool
	// Coordinator shares pause and halts between replicas; nil for a single daemon.
	Coordinator Coordinator
	// PriorStarts lists a schedule's starts made by earlier processes or other replicas since
	// the given time, so that MaxRunsPerDay and chaos-monkey gaps survive restarts. May be nil.
	PriorStarts func(ctx context.Context, schedule string, since time.Time) ([]time.Time, error)
	// RecoveryBackoff is the first wait between failed recovery attempts (doubled up to
	// 30s); 1s when zero.
	RecoveryBackoff time.Duration
	// PauseFile keeps a single daemon's pause switch across restarts (without a Coordinator).
	PauseFile string
	// PendingFile keeps the run records history refused across restarts; empty keeps them in
	// memory only.
	PendingFile string
	// HistoryRetry is the interval between attempts to write refused records; 5s when zero.
	HistoryRetry time.Duration
}

// Daemon schedules runs, serves Control, and keeps the ledger clean.
type Daemon struct {
	o    Options
	log  *slog.Logger
	gate schedule.Gate

	// cfg holds the schedules and runbooks in force (Options.Config until a reload).
	cfg atomic.Pointer[LoadedConfig]
	// loops are the schedule loops of the current leadership term (see loops.go).
	loops loopSet
	// reloadMu serialises reloads; lastHash is what the config files hashed to when they were
	// last read, so that the file watch reloads each change once.
	reloadMu sync.Mutex
	lastHash string

	paused, leader, ready atomic.Bool

	// runsWG counts run goroutines, so that shutdown waits for results to be stored.
	runsWG sync.WaitGroup

	mu sync.Mutex
	// leaderHolder is the Lease holder last seen; recovery says why this replica is not ready.
	leaderHolder, recovery string
	runs                   map[string]*activeRun
	next                   map[string]time.Time
	today                  map[string][]time.Time
	base                   context.Context // the daemon's lifetime; runs derive from it, not from API requests
	// unstored are run records history refused (see UnstoredResults), retried.
	unstored    []UnstoredRun
	unstoredSeq uint64
	// storeMu serialises writes to history (see store).
	storeMu sync.Mutex
	// orphansClosed is set once this term's leader has ended the runs a dead one left unfinished.
	orphansClosed atomic.Bool
}

type activeRun struct {
	sum    RunSummary
	cancel context.CancelCauseFunc
	// reverted closes when the engine returned: every fault of the run is reverted (or the
	// result says revert-incomplete). done closes after the result is stored too.
	reverted, done chan struct{}
}

// New returns a daemon; Run starts it.
func New(o Options) *Daemon {
	if o.Clock == nil {
		o.Clock = schedule.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	d := &Daemon{o: o, log: o.Logger, runs: map[string]*activeRun{}, next: map[string]time.Time{}, today: map[string][]time.Time{}}
	d.cfg.Store(o.Config)
	if o.ConfigPath != "" {
		d.lastHash = configHash(o.ConfigPath)
	}
	return d
}

// current is the config in force: the schedules and runbooks of the last successful load.
func (d *Daemon) current() *LoadedConfig { return d.cfg.Load() }

// Run recovers the ledger, then schedules while this replica leads, until ctx ends. On the way
// out every running run is halted and reverted.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	d.base = ctx
	d.mu.Unlock()
	d.loadPauseFile()
	retryDone := make(chan struct{})
	if d.o.Results != nil {
		d.loadPending()
		rctx, stopRetry := context.WithCancel(context.WithoutCancel(ctx))
		go func() { defer close(retryDone); d.retryUnstored(rctx) }()
		// After the runs: their final records are written, or kept and flushed once more.
		defer func() { stopRetry(); <-retryDone }()
	} else {
		close(retryDone)
	}
	defer func() {
		d.haltAll(&experiments.HaltRequest{Source: "signal", Reason: "daemon shutting down"})
		d.runsWG.Wait()
	}()

	if d.o.Elect == nil {
		// A single daemon owns its ledger: whatever is open belongs to a dead process.
		if !d.recoverUntilDone(ctx, nil) {
			return nil
		}
		d.ready.Store(true)
		d.leader.Store(true)
		d.o.Metrics.SetLeader(true)
		d.orphansClosed.Store(false)
		d.closeOrphanedRuns(ctx)
		d.schedule(ctx)
		return nil
	}
	d.ready.Store(true)
	return d.o.Elect(ctx, func(lctx context.Context) {
		d.log.Info("became leader", "identity", d.o.Identity)
		// The previous leader may have died mid-experiment: its faults are ours to revert before
		// anything new is scheduled.
		// Nothing is scheduled on top of faults that are still applied: until recovery
		// succeeds this replica is not ready and does not schedule.
		d.ready.Store(false)
		if !d.recoverUntilDone(lctx, d.o.Orphaned) {
			// The lease is lost (or the daemon stops): the orphans are the next leader's now.
			d.setRecovery("")
			d.o.Metrics.RecoveryPending(false)
			d.ready.Store(true)
			return
		}
		d.ready.Store(true)
		d.leader.Store(true)
		d.o.Metrics.SetLeader(true)
		d.orphansClosed.Store(false)
		d.closeOrphanedRuns(lctx)
		if d.o.Coordinator != nil {
			go d.o.Coordinator.ServeHalts(lctx, d.answerHalt)
		}
		go d.prune(lctx)
		d.schedule(lctx)
		d.leader.Store(false)
		d.o.Metrics.SetLeader(false)
		d.haltAll(&experiments.HaltRequest{Source: "leadership", Reason: "this replica lost the lease"})
		d.log.Info("stopped leading", "identity", d.o.Identity)
	})
}

func (d *Daemon) recover(ctx context.Context, orphaned func(ledger.Owner) bool) error {
	opts := experiments.RecoverOptions{}
	if orphaned != nil {
		opts.Live = func(o ledger.Owner) bool { return !orphaned(o) }
	}
	sum, err := experiments.Recover(ctx, d.o.Engine.Ledger, d.o.Registry, d.o.Env, opts)
	for _, l := range sum.Lines {
		d.log.Info("recover: " + l)
	}
	return err
}

// scheduledStart claims the start, admits it through the concurrency gate and runs it to the end,
// halting it if it would overrun its window or run into a blackout.
func (d *Daemon) scheduledStart(ctx context.Context, name string, c *schedule.Compiled, at time.Time) error {
	// The next start is not known until this one is over: status must not show this one as next.
	d.mu.Lock()
	delete(d.next, name)
	d.mu.Unlock()
	if d.o.Claimer != nil {
		ok, err := d.o.Claimer.Claim(ctx, name, at, d.o.Identity)
		if err != nil {
			d.log.Error("claim scheduled start", "schedule", name, "at", at, "err", err)
			return fmt.Errorf("claim: %w", schedule.ErrSkipped)
		}
		if !ok {
			d.log.Info("scheduled start already claimed by another replica", "schedule", name, "at", at)
			return fmt.Errorf("claimed elsewhere: %w", schedule.ErrSkipped)
		}
	}
	release, err := c.Admit(ctx, &d.gate)
	if err != nil {
		d.log.Info("scheduled start skipped", "schedule", name, "at", at, "err", err)
		return err
	}
	defer release()
	var deadline *time.Time
	if end, ok := c.Deadline(d.o.Clock.Now()); ok {
		deadline = &end
	}
	// A reload may have removed or changed this schedule while the start waited; the check and
	// the start hold the lock a reload swaps the config under, so that a start is either made
	// before the swap (and runs to its end) or not at all.
	d.loops.mu.Lock()
	rb := d.current().Runbooks[name]
	if ctx.Err() != nil || rb == nil {
		d.loops.mu.Unlock()
		return fmt.Errorf("schedule %q replaced by a reload: %w", name, schedule.ErrSkipped)
	}
	ar := d.start(name, rb, "schedule", deadline, nil)
	d.loops.mu.Unlock()
	<-ar.done
	return nil
}

// start launches a run; it returns at once. release (may be nil) is called as soon as the run's
// faults are reverted, before anyone waiting on that learns of it, so that a caller who saw the
// run halted can start the next one on the same target at once.
func (d *Daemon) start(scheduleName string, rb *runbooks.Runbook, trigger string, deadline *time.Time, release func()) *activeRun {
	runID := experiments.NewRunID()
	d.mu.Lock()
	base := d.base
	d.mu.Unlock()
	ctx, cancel := context.WithCancelCause(base)
	if deadline != nil {
		var stop context.CancelFunc
		ctx, stop = context.WithDeadlineCause(ctx, *deadline, &experiments.HaltRequest{Source: "window",
			Reason: "the schedule's window ends (or a blackout begins) at " + deadline.Format(time.RFC3339)})
		inner := cancel
		cancel = func(cause error) { inner(cause); stop() }
	}
	ar := &activeRun{cancel: cancel, reverted: make(chan struct{}), done: make(chan struct{}),
		sum: RunSummary{RunID: runID, Schedule: scheduleName, Runbook: rb.Metadata.Name, Trigger: trigger, StartedAt: time.Now(), Replica: d.o.Identity}}
	d.mu.Lock()
	d.runs[runID] = ar
	d.today[scheduleName] = append(d.today[scheduleName], ar.sum.StartedAt)
	d.mu.Unlock()
	d.runsWG.Add(1)
	go func() {
		defer d.runsWG.Done()
		defer close(ar.done)
		defer cancel(nil)
		if d.o.Results != nil {
			// Stored at its start too, so that a run whose replica dies is not lost: the next
			// leader finds it unfinished and records how it ended, and it counts for the cap.
			sctx, scancel := context.WithTimeout(context.WithoutCancel(base), 10*time.Second)
			d.store(sctx, ar.sum, nil)
			scancel()
		}
		res := d.o.Engine.Run(ctx, rb, experiments.RunOptions{RunID: runID})
		if release != nil {
			release()
		}
		close(ar.reverted)
		end := res.EndedAt
		sum := ar.sum
		sum.EndedAt, sum.Verdict, sum.ExitCode, sum.Reason = &end, res.Verdict, res.ExitCode, res.Reason
		d.o.Metrics.Run(scheduleName, string(res.Verdict))
		if d.o.Results != nil {
			// The run is over; storing its result must not fail because the daemon is stopping.
			sctx, scancel := context.WithTimeout(context.WithoutCancel(base), 30*time.Second)
			d.compareWithPrevious(sctx, scheduleName, rb, res)
			d.store(sctx, sum, res)
			scancel()
		}
		d.mu.Lock()
		delete(d.runs, runID)
		d.mu.Unlock()
		d.log.Info("run finished", "run", runID, "schedule", scheduleName, "verdict", res.Verdict)
	}()
	return ar
}

// haltAll cancels every run with cause and waits until each has reverted its faults and stored its
// result, so that a caller who gets the answer finds the runs finished in history.
func (d *Daemon) haltAll(cause *experiments.HaltRequest) []string {
	d.mu.Lock()
	runs := make([]*activeRun, 0, len(d.runs))
	for _, r := range d.runs {
		runs = append(runs, r)
	}
	d.mu.Unlock()
	ids := make([]string, 0, len(runs))
	for _, r := range runs {
		r.cancel(cause)
		ids = append(ids, r.sum.RunID)
	}
	for _, r := range runs {
		<-r.done
	}
	sort.Strings(ids)
	return ids
}

// Schedules implements Control.
func (d *Daemon) Schedules() []ScheduleStatus {
	now := d.o.Clock.Now()
	cfg := d.current()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ScheduleStatus, 0, len(cfg.Schedules))
	for _, s := range cfg.Schedules {
		c := cfg.Compiled[s.Name]
		st := ScheduleStatus{Name: s.Name, Runbook: s.Runbook, Mode: "cron", Spec: s.Cron, InWindow: c.InWindow(now)}
		if s.ChaosMonkey != nil {
			st.Mode, st.Spec = "chaos-monkey", "mean "+s.ChaosMonkey.MeanTimeBetweenRuns
		}
		if n, ok := d.next[s.Name]; ok && d.leader.Load() {
			st.NextStart = &n
		}
		if b, ok := c.InBlackout(now); ok {
			st.Blackout = b.Name + ": " + b.Reason
		}
		for _, t := range d.today[s.Name] {
			if y, m, dd := t.In(c.Location()).Date(); y == now.In(c.Location()).Year() && m == now.In(c.Location()).Month() && dd == now.In(c.Location()).Day() {
				st.RunsToday++
			}
		}
		out = append(out, st)
	}
	return out
}

// Active implements Control.
func (d *Daemon) Active() []RunSummary {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]RunSummary, 0, len(d.runs))
	for _, r := range d.runs {
		out = append(out, r.sum)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// Trigger implements Control: a run of a configured schedule's runbook, now.
func (d *Daemon) Trigger(ctx context.Context, name, who string) (string, error) {
	var sched *schedule.Schedule
	cfg := d.current()
	for i, s := range cfg.Schedules {
		if s.Name == name || s.Runbook == name {
			sched = &cfg.Schedules[i]
			break
		}
	}
	switch {
	case sched == nil:
		return "", fmt.Errorf("%w: no schedule or runbook %q in the daemon's config", ErrNotFound, name)
	case d.Recovery() != "":
		return "", fmt.Errorf("%w: %s", ErrConflict, d.Recovery())
	case !d.leader.Load():
		return "", fmt.Errorf("%w: this replica is not the leader (%s is)", ErrConflict, dash(d.LeaderIdentity()))
	case d.schedulingPaused(ctx):
		return "", fmt.Errorf("%w: scheduling is paused", ErrConflict)
	}
	c := cfg.Compiled[sched.Name]
	if b, ok := c.InBlackout(d.o.Clock.Now()); ok {
		return "", fmt.Errorf("%w: schedule %q is in blackout %q (%s)", ErrConflict, sched.Name, b.Name, b.Reason)
	}
	release, ok := d.gate.TryAcquire(c.Target())
	if !ok {
		return "", fmt.Errorf("%w: a run on target %q is in progress", ErrConflict, c.Target())
	}
	// The gate guards faults on the target: it is released once they are reverted.
	ar := d.start(sched.Name, cfg.Runbooks[sched.Name], "api:"+who, nil, release)
	return ar.sum.RunID, nil
}

// Leader implements Control.
func (d *Daemon) Leader() bool { return d.leader.Load() }

// Ready implements Control.
func (d *Daemon) Ready() bool { return d.ready.Load() }

func dash(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

var _ Control = (*Daemon)(nil)
