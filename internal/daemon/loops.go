package daemon

import (
	"context"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/experiments/schedule"
)

// loopSet is one goroutine per schedule while this replica leads. A reload replaces the loops of
// the schedules it changed and stops those it removed; a loop stopped this way finishes the run
// it started (runs live on the daemon's context, not the loop's), so a reload never interrupts
// an experiment, and the replacing loop waits for it: the schedules are swapped between runs.
type loopSet struct {
	mu sync.Mutex
	// ctx is the leadership term's context; nil while this replica does not schedule.
	ctx   context.Context
	loops map[string]*schedLoop
	wg    sync.WaitGroup
}

type schedLoop struct {
	spec   schedule.Schedule
	cancel context.CancelFunc
	// done closes when the loop returned, after the run it started (if any) finished.
	done chan struct{}
}

// schedule runs the current config's schedules until ctx ends, following reloads.
func (d *Daemon) schedule(ctx context.Context) {
	ls := &d.loops
	ls.mu.Lock()
	ls.ctx = ctx
	d.syncLoopsLocked()
	ls.mu.Unlock()
	<-ctx.Done()
	ls.mu.Lock()
	ls.ctx = nil
	for _, l := range ls.loops {
		l.cancel()
	}
	ls.loops = nil
	ls.mu.Unlock()
	ls.wg.Wait()
}

// syncLoopsLocked makes the running loops match the current config: unchanged schedules keep
// their loop (and so their next start, which a chaos-monkey schedule drew at random), changed
// ones get a new loop, removed ones stop. The caller holds d.loops.mu.
func (d *Daemon) syncLoopsLocked() {
	ls := &d.loops
	if ls.ctx == nil {
		return // not leading: the next term starts from the current config
	}
	if ls.loops == nil {
		ls.loops = map[string]*schedLoop{}
	}
	cfg := d.current()
	specs := make(map[string]schedule.Schedule, len(cfg.Schedules))
	for _, s := range cfg.Schedules {
		specs[s.Name] = s
	}
	for name, l := range ls.loops {
		if s, ok := specs[name]; !ok || !reflect.DeepEqual(s, l.spec) {
			l.cancel()
		}
		if _, ok := specs[name]; !ok {
			delete(ls.loops, name)
			d.forgetSchedule(name)
		}
	}
	for _, s := range cfg.Schedules {
		prev := ls.loops[s.Name]
		if prev != nil && reflect.DeepEqual(prev.spec, s) {
			continue
		}
		lctx, cancel := context.WithCancel(ls.ctx)
		l := &schedLoop{spec: s, cancel: cancel, done: make(chan struct{})}
		ls.loops[s.Name] = l
		ls.wg.Add(1)
		go d.runLoop(lctx, l, s.Name, cfg.Compiled[s.Name], prev)
	}
}

// runLoop starts c's runs until ctx ends; it begins once prev (the loop it replaces) is over.
func (d *Daemon) runLoop(ctx context.Context, l *schedLoop, name string, c *schedule.Compiled, prev *schedLoop) {
	defer d.loops.wg.Done()
	defer close(l.done)
	defer l.cancel()
	if prev != nil {
		// Not cut short when ctx ends: a loop replacing this one must wait for prev's run too.
		<-prev.done
	}
	if ctx.Err() != nil {
		return
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	prior := d.priorStarts(ctx, name)
	err := schedule.LoopFrom(ctx, d.o.Clock, c, rng, func(lctx context.Context, at time.Time) error {
		return d.scheduledStart(lctx, name, c, at)
	}, func() bool { return d.schedulingPaused(ctx) }, func(at time.Time) {
		d.mu.Lock()
		d.next[name] = at
		d.mu.Unlock()
		d.o.Metrics.NextStart(name, at)
	}, prior)
	// LoopFrom returns only with an error: ctx ending, or no permitted start left.
	if ctx.Err() == nil {
		d.log.Error("schedule stopped", "schedule", name, "err", err)
	}
}

// forgetSchedule drops what status and /metrics show of a schedule a reload removed.
func (d *Daemon) forgetSchedule(name string) {
	d.mu.Lock()
	delete(d.next, name)
	d.mu.Unlock()
	d.o.Metrics.ForgetSchedule(name)
}
