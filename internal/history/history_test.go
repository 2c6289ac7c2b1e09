package history

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

func open(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// result makes a result document with enough in it to notice a lossy round trip.
func result(id, runbook string, v experiments.Verdict, started time.Time) *experiments.Result {
	return &experiments.Result{
		RunID: id, Runbook: runbook, Environment: "staging", Verdict: v, ExitCode: v.ExitCode(),
		Reason: "because " + id, StartedAt: started, EndedAt: started.Add(90 * time.Second),
		Halt: &experiments.Halt{At: started.Add(time.Minute), Reason: "error ratio", Source: "guardrail", Guardrail: "errors"},
		Experiments: []experiments.ExperimentResult{{
			Name: "kill-one", Verdict: v, StartedAt: started, EndedAt: started.Add(80 * time.Second),
			Faults: []experiments.FaultResult{{Name: "pause", Kind: "process-pause", Targets: []string{"pid 42"}}},
		}},
	}
}

func put(t *testing.T, s *Store, schedule string, res *experiments.Result) {
	t.Helper()
	if err := s.Put(context.Background(), SummaryOf(res, schedule, "schedule"), res); err != nil {
		t.Fatal(err)
	}
}

func ids(sums []Summary) string {
	var out []string
	for _, s := range sums {
		out = append(out, s.RunID)
	}
	return strings.Join(out, ",")
}

func TestPutGetSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "history.db")
	s := open(t, path, Options{})
	want := result("r1", "checkout", experiments.Halted, t0)
	put(t, s, "nightly", want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path, Options{})
	defer s.Close()
	rec, err := s.Get(context.Background(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Summary.Schedule != "nightly" || rec.Summary.Trigger != "schedule" || rec.Summary.Verdict != experiments.Halted ||
		rec.Summary.ExitCode != 2 || !rec.Summary.StartedAt.Equal(t0) || rec.Summary.EndedAt == nil || !rec.Summary.EndedAt.Equal(want.EndedAt) {
		t.Errorf("summary after reopen = %+v", rec.Summary)
	}
	got := rec.Result
	if got == nil || got.RunID != "r1" || got.Environment != "staging" || got.Halt == nil || got.Halt.Guardrail != "errors" ||
		len(got.Experiments) != 1 || got.Experiments[0].Faults[0].Targets[0] != "pid 42" {
		t.Errorf("result after reopen = %+v", got)
	}
	list, err := s.List(context.Background(), Filter{})
	if err != nil || ids(list) != "r1" {
		t.Errorf("list after reopen = %q, %v", ids(list), err)
	}
}

func TestGetUnknown(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "h.db"), Options{})
	defer s.Close()
	if _, err := s.Get(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(nope) = %v, want ErrNotFound", err)
	}
}

func TestListNewestFirstAndFilters(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "h.db"), Options{})
	defer s.Close()
	// Stored out of order on purpose: List orders by start time, not by insertion.
	put(t, s, "nightly", result("c", "checkout", experiments.Passed, t0.Add(2*time.Hour)))
	put(t, s, "nightly", result("a", "checkout", experiments.Halted, t0))
	put(t, s, "", result("d", "search", experiments.Failed, t0.Add(3*time.Hour)))
	put(t, s, "hourly", result("b", "search", experiments.Passed, t0.Add(time.Hour)))

	ctx := context.Background()
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "d,c,b,a"},
		{Filter{Limit: 2}, "d,c"},
		{Filter{Schedule: "nightly"}, "c,a"},
		{Filter{Verdict: experiments.Passed}, "c,b"},
		{Filter{Runbook: "search"}, "d,b"},
		{Filter{Since: t0.Add(time.Hour)}, "d,c,b"},
		{Filter{Since: t0.Add(time.Hour), Verdict: experiments.Passed, Limit: 1}, "c"},
		{Filter{Schedule: "weekly"}, ""},
	} {
		got, err := s.List(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if ids(got) != c.want {
			t.Errorf("List(%+v) = %q, want %q", c.f, ids(got), c.want)
		}
	}
}

func TestPutReplacesTheSameRun(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "h.db"), Options{})
	defer s.Close()
	ctx := context.Background()
	// First without a result (a run that ended before producing one), then with a different start.
	if err := s.Put(ctx, Summary{RunID: "x", Runbook: "rb", StartedAt: t0, Verdict: experiments.Aborted}, nil); err != nil {
		t.Fatal(err)
	}
	put(t, s, "", result("x", "rb", experiments.Passed, t0.Add(time.Minute)))
	list, err := s.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Verdict != experiments.Passed || !list[0].StartedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after replacing: %+v", list)
	}
	rec, err := s.Get(ctx, "x")
	if err != nil || rec.Result == nil {
		t.Fatalf("Get(x) = %+v, %v", rec, err)
	}
}

func TestPutRejects(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "h.db"), Options{})
	defer s.Close()
	ctx := context.Background()
	if err := s.Put(ctx, Summary{}, nil); err == nil {
		t.Error("Put with an empty run ID succeeded")
	}
	if err := s.Put(ctx, Summary{RunID: "a"}, result("b", "rb", experiments.Passed, t0)); err == nil {
		t.Error("Put with a result of another run succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, Summary{RunID: "a"}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context = %v", err)
	}
}

func TestRetentionByCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	s := open(t, path, Options{Retention: Retention{MaxRuns: 3}})
	for i := range 5 {
		put(t, s, "nightly", result(fmt.Sprintf("r%d", i), "rb", experiments.Passed, t0.Add(time.Duration(i)*time.Hour)))
	}
	// An old run arriving late is the oldest, so it is the one dropped.
	put(t, s, "nightly", result("late", "rb", experiments.Passed, t0.Add(-time.Hour)))
	ctx := context.Background()
	list, err := s.List(ctx, Filter{})
	if err != nil || ids(list) != "r4,r3,r2" {
		t.Fatalf("kept %q, %v; want r4,r3,r2", ids(list), err)
	}
	for _, id := range []string{"r0", "r1", "late"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%s) after retention = %v, want ErrNotFound", id, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A smaller limit applies on the next Compact after a restart.
	s = open(t, path, Options{Retention: Retention{MaxRuns: 1}})
	defer s.Close()
	n, err := s.Compact(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Compact = %d, %v; want 2 dropped", n, err)
	}
	if list, _ := s.List(ctx, Filter{}); ids(list) != "r4" {
		t.Fatalf("after Compact kept %q, want r4", ids(list))
	}
}

func TestRetentionByAge(t *testing.T) {
	now := t0.Add(10 * 24 * time.Hour)
	clock := func() time.Time { return now }
	s := open(t, filepath.Join(t.TempDir(), "h.db"), Options{Retention: Retention{MaxAge: 7 * 24 * time.Hour}, Now: clock})
	defer s.Close()
	ctx := context.Background()
	put(t, s, "", result("old", "rb", experiments.Passed, now.Add(-8*24*time.Hour))) // dropped by its own Put
	put(t, s, "", result("mid", "rb", experiments.Passed, now.Add(-5*24*time.Hour))) // kept until the clock moves
	put(t, s, "", result("new", "rb", experiments.Passed, now.Add(-1*24*time.Hour))) // kept
	if list, _ := s.List(ctx, Filter{}); ids(list) != "new,mid" {
		t.Fatalf("kept %q, want new,mid", ids(list))
	}
	now = now.Add(3 * 24 * time.Hour) // mid is now 8 days old
	n, err := s.Compact(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Compact = %d, %v; want 1 dropped", n, err)
	}
	if list, _ := s.List(ctx, Filter{}); ids(list) != "new" {
		t.Fatalf("after Compact kept %q, want new", ids(list))
	}
	if _, err := s.Get(ctx, "mid"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(mid) = %v, want ErrNotFound", err)
	}
}

func TestOneProcessOwnsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	s := open(t, path, Options{})
	defer s.Close()
	_, err := Open(context.Background(), path, Options{LockTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second Open = %v, want a lock error", err)
	}
}

func TestRejectsNegativeRetention(t *testing.T) {
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "h.db"), Options{Retention: Retention{MaxRuns: -1}}); err == nil {
		t.Fatal("Open with MaxRuns -1 succeeded")
	}
}

func TestConcurrentPutAndList(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "h.db"), Options{Retention: Retention{MaxRuns: 20}})
	defer s.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				res := result(fmt.Sprintf("w%dr%d", w, i), "rb", experiments.Passed, t0.Add(time.Duration(i)*time.Minute))
				if err := s.Put(ctx, SummaryOf(res, "s", "api"), res); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for range 25 {
				if _, err := s.List(ctx, Filter{Limit: 5}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if list, _ := s.List(ctx, Filter{}); len(list) != 20 {
		t.Errorf("kept %d runs, want 20", len(list))
	}
}
