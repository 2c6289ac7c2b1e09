package schedule

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// loopRun runs Loop on a FakeClock and records each start with the fake time it
// was called at.
type loopRun struct {
	t       *testing.T
	clk     *FakeClock
	cancel  context.CancelFunc
	stopped chan struct{} // closed when Loop returned err
	err     error

	mu     sync.Mutex
	starts []string // "scheduled@now", UTC
}

func startLoop(t *testing.T, c *Compiled, now string, startErr func(scheduled time.Time) error, paused func(now time.Time) bool) *loopRun {
	t.Helper()
	r := &loopRun{t: t, clk: NewFakeClock(ts(now)), stopped: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	t.Cleanup(cancel)
	start := func(_ context.Context, scheduled time.Time) error {
		r.mu.Lock()
		r.starts = append(r.starts, scheduled.UTC().Format("01-02T15:04")+"@"+r.clk.Now().UTC().Format("01-02T15:04"))
		r.mu.Unlock()
		if startErr != nil {
			return startErr(scheduled)
		}
		return nil
	}
	var p func() bool
	if paused != nil {
		p = func() bool { return paused(r.clk.Now()) }
	}
	go func() {
		defer close(r.stopped)
		r.err = Loop(ctx, r.clk, c, nil, start, p)
	}()
	return r
}

// runUntil fires the loop's timers one by one, like a discrete-event simulation,
// until the next one is due after until or the loop returns.
func (r *loopRun) runUntil(until string) {
	r.t.Helper()
	end := ts(until)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		go func() {
			select {
			case <-r.stopped:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := r.clk.WaitForTimers(ctx, 1)
		cancel()
		select {
		case <-r.stopped:
			return
		default:
		}
		if err != nil {
			r.t.Fatalf("loop stopped waiting on the clock at %s: %v", r.clk.Now(), err)
		}
		next, _ := r.clk.NextDeadline()
		if next.After(end) {
			return
		}
		r.clk.AdvanceTo(next)
	}
}

func (r *loopRun) result() error {
	r.t.Helper()
	select {
	case <-r.stopped:
		return r.err
	case <-time.After(10 * time.Second):
		r.t.Fatal("Loop did not return")
		return nil
	}
}

func (r *loopRun) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.starts)
}

func TestLoop(t *testing.T) {
	morning := []Window{{Days: []string{"mon-fri"}, Start: "09:00", End: "12:00"}}
	tests := []struct {
		name   string
		s      Schedule
		paused func(now time.Time) bool
		err    func(scheduled time.Time) error
		until  string
		want   []string
	}{
		{
			name:  "starts fire at their fake times",
			s:     Schedule{Cron: "0 * * * *", Windows: morning},
			until: "2026-01-06T12:30:00Z",
			want:  []string{"01-05T09:00@01-05T09:00", "01-05T10:00@01-05T10:00", "01-05T11:00@01-05T11:00", "01-06T09:00@01-06T09:00", "01-06T10:00@01-06T10:00", "01-06T11:00@01-06T11:00"},
		},
		{
			name:   "paused starts are skipped",
			s:      Schedule{Cron: "0 * * * *", Windows: morning},
			paused: func(now time.Time) bool { return now.Hour() == 10 },
			until:  "2026-01-06T12:30:00Z",
			want:   []string{"01-05T09:00@01-05T09:00", "01-05T11:00@01-05T11:00", "01-06T09:00@01-06T09:00", "01-06T11:00@01-06T11:00"},
		},
		{
			name:  "cap per day",
			s:     Schedule{Cron: "0 */4 * * *", MaxRunsPerDay: 2},
			until: "2026-01-07T00:30:00Z",
			want:  []string{"01-05T00:00@01-05T00:00", "01-05T04:00@01-05T04:00", "01-06T00:00@01-06T00:00", "01-06T04:00@01-06T04:00", "01-07T00:00@01-07T00:00"},
		},
		{
			name: "skipped starts do not count against the cap",
			s:    Schedule{Cron: "0 */4 * * *", MaxRunsPerDay: 1},
			err: func(s time.Time) error {
				if s.Hour() == 0 {
					return ErrSkipped
				}
				return nil
			},
			until: "2026-01-06T23:00:00Z",
			want:  []string{"01-05T00:00@01-05T00:00", "01-05T04:00@01-05T04:00", "01-06T00:00@01-06T00:00", "01-06T04:00@01-06T04:00"},
		},
		{
			name:  "blackouts are never started",
			s:     Schedule{Cron: "0 * * * *", Windows: morning, Blackouts: []Blackout{{From: "2026-01-05T09:30:00Z", To: "2026-01-06T10:00:00Z"}}},
			until: "2026-01-06T12:30:00Z",
			want:  []string{"01-05T09:00@01-05T09:00", "01-06T10:00@01-06T10:00", "01-06T11:00@01-06T11:00"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startLoop(t, mustCompile(t, tt.s), "2026-01-04T23:59:30Z", tt.err, tt.paused) // Sunday night
			r.runUntil(tt.until)
			r.cancel()
			if err := r.result(); !errors.Is(err, context.Canceled) {
				t.Errorf("Loop after cancel = %v, want context.Canceled", err)
			}
			if got := r.got(); !slices.Equal(got, tt.want) {
				t.Errorf("starts (scheduled@called):\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestLoopSkipsStartMissedByClockJump(t *testing.T) {
	c := mustCompile(t, Schedule{Cron: "0 9 * * *", Windows: []Window{{Start: "09:00", End: "09:30"}}})
	r := startLoop(t, c, "2026-01-05T08:59:00Z", nil, nil)
	if err := r.clk.WaitForTimers(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	r.clk.AdvanceTo(ts("2026-01-05T09:45:00Z")) // e.g. a VM paused across the window
	r.runUntil("2026-01-06T09:10:00Z")
	r.cancel()
	if err := r.result(); !errors.Is(err, context.Canceled) {
		t.Errorf("Loop = %v", err)
	}
	if got, want := r.got(), []string{"01-06T09:00@01-06T09:00"}; !slices.Equal(got, want) {
		t.Errorf("starts %v, want %v", got, want)
	}
}

func TestLoopReturnsStartError(t *testing.T) {
	boom := errors.New("ledger unwritable")
	c := mustCompile(t, Schedule{Name: "nightly", Cron: "0 9 * * *"})
	r := startLoop(t, c, "2026-01-05T08:00:00Z", func(time.Time) error { return boom }, nil)
	r.runUntil("2026-01-05T09:00:00Z")
	err := r.result()
	if !errors.Is(err, boom) || err.Error() != `schedule "nightly": start at 2026-01-05T09:00:00Z: ledger unwritable` {
		t.Errorf("Loop = %v", err)
	}
}

func TestLoopWithoutStartReturnsErrNoStart(t *testing.T) {
	c := mustCompile(t, Schedule{Cron: "@hourly", Blackouts: []Blackout{{From: "2026-01-01", To: "2027-06-30"}}})
	r := startLoop(t, c, "2026-01-05T08:00:00Z", nil, nil)
	if err := r.result(); !errors.Is(err, ErrNoStart) {
		t.Errorf("Loop = %v, want ErrNoStart", err)
	}
}

func TestLoopRequiresArguments(t *testing.T) {
	if err := Loop(t.Context(), nil, nil, nil, nil, nil); err == nil {
		t.Error("Loop without clock, schedule and start = nil")
	}
}

func TestFakeClockTimers(t *testing.T) {
	clk := NewFakeClock(ts("2026-01-05T00:00:00Z"))
	a, b := clk.NewTimer(time.Hour), clk.NewTimer(2*time.Hour)
	if c := clk.NewTimer(0); len(c.C()) != 1 {
		t.Error("a timer for now did not fire at once")
	}
	clk.Advance(90 * time.Minute)
	select {
	case got := <-a.C():
		if !got.Equal(ts("2026-01-05T01:30:00Z")) {
			t.Errorf("fired with %s", got)
		}
	default:
		t.Error("due timer did not fire")
	}
	if len(b.C()) != 0 || !b.Stop() || b.Stop() {
		t.Error("undue timer fired, or Stop misreported")
	}
	clk.Advance(time.Hour)
	if len(b.C()) != 0 {
		t.Error("stopped timer fired")
	}
}
