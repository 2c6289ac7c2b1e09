// Package historytest is the conformance test every history backend passes: the same puts, gets,
// lists, paging, retention and cap/baseline look-ups, with the same answers. Only tests import it.
package historytest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/history"
)

// Opener returns an empty backend with opts; the test closes it.
type Opener func(t *testing.T, opts history.Options) history.Backend

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 123456789, time.UTC)

// Result makes a result document with enough in it to notice a lossy round trip.
func Result(id, runbook string, v experiments.Verdict, started time.Time) *experiments.Result {
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

func put(t *testing.T, b history.Backend, schedule string, res *experiments.Result) {
	t.Helper()
	if err := b.Put(context.Background(), history.SummaryOf(res, schedule, "schedule"), res); err != nil {
		t.Fatal(err)
	}
}

func ids(sums []history.Summary) string {
	out := make([]string, 0, len(sums))
	for _, s := range sums {
		out = append(out, s.RunID)
	}
	return strings.Join(out, ",")
}

func open(t *testing.T, o Opener, opts history.Options) history.Backend {
	t.Helper()
	b := o(t, opts)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// Run runs the conformance tests against backends made by open.
func Run(t *testing.T, o Opener) {
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, open(t, o, history.Options{})) })
	t.Run("ListFiltersAndPaging", func(t *testing.T) { listFilters(t, open(t, o, history.Options{})) })
	t.Run("UnfinishedThenFinished", func(t *testing.T) { unfinished(t, open(t, o, history.Options{})) })
	t.Run("RetentionByCount", func(t *testing.T) {
		retentionByCount(t, open(t, o, history.Options{Retention: history.Retention{MaxRuns: 3}}))
	})
	t.Run("RetentionByAge", func(t *testing.T) { retentionByAge(t, o) })
	t.Run("PreviousAndStarts", func(t *testing.T) { previousAndStarts(t, open(t, o, history.Options{})) })
	t.Run("ConcurrentPuts", func(t *testing.T) { concurrentPuts(t, open(t, o, history.Options{})) })
	t.Run("BadInput", func(t *testing.T) { badInput(t, open(t, o, history.Options{})) })
	t.Run("PutBatch", func(t *testing.T) { putBatch(t, open(t, o, history.Options{Retention: history.Retention{MaxRuns: 3}})) })
}

// Batcher is implemented by backends that load many records in one transaction.
type Batcher interface {
	PutBatch(ctx context.Context, recs []history.Record) error
}

func putBatch(t *testing.T, b history.Backend) {
	bb, ok := b.(Batcher)
	if !ok {
		t.Skip("the backend has no PutBatch")
	}
	ctx := context.Background()
	var recs []history.Record
	for i := range 5 {
		res := Result(fmt.Sprintf("b%d", i), "rb", experiments.Passed, t0.Add(time.Duration(i)*time.Minute))
		recs = append(recs, history.Record{Summary: history.SummaryOf(res, "s", "schedule"), Result: res})
	}
	if err := bb.PutBatch(ctx, recs); err != nil {
		t.Fatal(err)
	}
	got, err := b.List(ctx, history.Filter{})
	if err != nil || ids(got) != "b4,b3,b2" {
		t.Errorf("after a batch of 5 with MaxRuns 3: %q, %v", ids(got), err)
	}
	if rec, err := b.Get(ctx, "b3"); err != nil || rec.Result == nil || rec.Result.Reason != "because b3" {
		t.Errorf("Get(b3) = %+v, %v", rec, err)
	}
	bad := []history.Record{recs[0], {Summary: history.Summary{RunID: ""}}}
	if err := bb.PutBatch(ctx, bad); err == nil {
		t.Error("a batch with an empty run ID: no error")
	}
	if got, _ := b.List(ctx, history.Filter{}); ids(got) != "b4,b3,b2" {
		t.Errorf("a refused batch changed the history: %q", ids(got))
	}
}

func roundTrip(t *testing.T, b history.Backend) {
	ctx := context.Background()
	want := Result("r1", "checkout", experiments.Halted, t0)
	put(t, b, "nightly", want)
	rec, err := b.Get(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	s := rec.Summary
	if s.Schedule != "nightly" || s.Trigger != "schedule" || s.Verdict != experiments.Halted || s.ExitCode != 2 ||
		!s.StartedAt.Equal(t0) || s.EndedAt == nil || !s.EndedAt.Equal(want.EndedAt) || s.Reason != "because r1" {
		t.Errorf("summary = %+v", s)
	}
	got := rec.Result
	if got == nil || got.RunID != "r1" || got.Environment != "staging" || got.Halt == nil || got.Halt.Guardrail != "errors" ||
		len(got.Experiments) != 1 || got.Experiments[0].Faults[0].Targets[0] != "pid 42" || !got.StartedAt.Equal(t0) {
		t.Errorf("result = %+v", got)
	}
	if _, err := b.Get(ctx, "nope"); !errors.Is(err, history.ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}
	// A record without a result document.
	sum := history.SummaryOf(Result("r2", "checkout", experiments.Aborted, t0.Add(time.Second)), "", "api:ci")
	if err := b.Put(ctx, sum, nil); err != nil {
		t.Fatal(err)
	}
	rec, err = b.Get(ctx, "r2")
	if err != nil || rec.Result != nil || rec.Summary.Trigger != "api:ci" || rec.Summary.Schedule != "" {
		t.Errorf("Get(r2) = %+v, %v; want a summary without result", rec, err)
	}
}

func listFilters(t *testing.T, b history.Backend) {
	ctx := context.Background()
	// Stored out of order on purpose: List orders by start time, not by insertion.
	put(t, b, "nightly", Result("c", "checkout", experiments.Passed, t0.Add(2*time.Hour)))
	put(t, b, "nightly", Result("a", "checkout", experiments.Halted, t0))
	put(t, b, "", Result("d", "search", experiments.Failed, t0.Add(3*time.Hour)))
	put(t, b, "hourly", Result("b", "search", experiments.Passed, t0.Add(time.Hour)))
	// Same start as c: the run ID breaks the tie, in the same order in every backend.
	put(t, b, "nightly", Result("c2", "checkout", experiments.Passed, t0.Add(2*time.Hour)))
	for _, c := range []struct {
		f    history.Filter
		want string
	}{
		{history.Filter{}, "d,c2,c,b,a"},
		{history.Filter{Limit: 2}, "d,c2"},
		{history.Filter{Offset: 2, Limit: 2}, "c,b"},
		{history.Filter{Offset: 4, Limit: 2}, "a"},
		{history.Filter{Offset: 9}, ""},
		{history.Filter{Schedule: "nightly"}, "c2,c,a"},
		{history.Filter{Schedule: "nightly", Offset: 1, Limit: 1}, "c"},
		{history.Filter{Verdict: experiments.Passed}, "c2,c,b"},
		{history.Filter{Runbook: "search"}, "d,b"},
		{history.Filter{Since: t0.Add(time.Hour)}, "d,c2,c,b"},
		{history.Filter{Since: t0.Add(time.Hour), Verdict: experiments.Passed, Limit: 1}, "c2"},
		{history.Filter{Schedule: "weekly"}, ""},
		{history.Filter{Unfinished: true}, ""},
	} {
		got, err := b.List(ctx, c.f)
		if err != nil {
			t.Fatalf("List(%+v): %v", c.f, err)
		}
		if got == nil {
			t.Errorf("List(%+v) = nil, want an empty list", c.f)
		}
		if ids(got) != c.want {
			t.Errorf("List(%+v) = %q, want %q", c.f, ids(got), c.want)
		}
	}
	if _, err := b.List(ctx, history.Filter{Offset: -1}); err == nil {
		t.Error("List with a negative offset: no error")
	}
}

func unfinished(t *testing.T, b history.Backend) {
	ctx := context.Background()
	open := history.Summary{RunID: "u1", Schedule: "nightly", Runbook: "checkout", Trigger: "schedule", StartedAt: t0}
	if err := b.Put(ctx, open, nil); err != nil {
		t.Fatal(err)
	}
	put(t, b, "nightly", Result("f1", "checkout", experiments.Passed, t0.Add(-time.Hour)))
	got, err := b.List(ctx, history.Filter{Unfinished: true})
	if err != nil || ids(got) != "u1" || got[0].EndedAt != nil || got[0].Verdict != "" {
		t.Fatalf("unfinished = %+v, %v; want u1 without end", got, err)
	}
	// The final record replaces the one stored at the start: the run is listed once.
	res := Result("u1", "checkout", experiments.Aborted, t0)
	put(t, b, "nightly", res)
	if got, err = b.List(ctx, history.Filter{Unfinished: true}); err != nil || len(got) != 0 {
		t.Errorf("unfinished after the final put = %q, %v", ids(got), err)
	}
	if got, err = b.List(ctx, history.Filter{}); err != nil || ids(got) != "u1,f1" || got[0].Verdict != experiments.Aborted {
		t.Errorf("list = %+v, %v; want u1 (aborted), f1", got, err)
	}
}

func retentionByCount(t *testing.T, b history.Backend) {
	ctx := context.Background()
	for i := range 5 {
		put(t, b, "s", Result(fmt.Sprintf("r%d", i), "rb", experiments.Passed, t0.Add(time.Duration(i)*time.Minute)))
	}
	got, err := b.List(ctx, history.Filter{})
	if err != nil || ids(got) != "r4,r3,r2" {
		t.Errorf("after 5 puts with MaxRuns 3: %q, %v", ids(got), err)
	}
	if _, err := b.Get(ctx, "r0"); !errors.Is(err, history.ErrNotFound) {
		t.Errorf("Get(r0) dropped by retention = %v, want ErrNotFound", err)
	}
}

func retentionByAge(t *testing.T, o Opener) {
	ctx := context.Background()
	var mu sync.Mutex
	now := t0.Add(10 * time.Hour)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := open(t, o, history.Options{Retention: history.Retention{MaxAge: 5 * time.Hour}, Now: clock})
	put(t, b, "s", Result("old", "rb", experiments.Passed, t0.Add(6*time.Hour)))
	put(t, b, "s", Result("new", "rb", experiments.Passed, t0.Add(9*time.Hour)))
	mu.Lock()
	now = t0.Add(12 * time.Hour) // old is 6h old now, new 3h
	mu.Unlock()
	n, err := b.Compact(ctx)
	if err != nil || n != 1 {
		t.Errorf("Compact = %d, %v; want 1 dropped", n, err)
	}
	got, err := b.List(ctx, history.Filter{})
	if err != nil || ids(got) != "new" {
		t.Errorf("after Compact: %q, %v", ids(got), err)
	}
}

func previousAndStarts(t *testing.T, b history.Backend) {
	ctx := context.Background()
	if p, err := history.PreviousPassed(ctx, b, "nightly"); err != nil || p != nil {
		t.Fatalf("PreviousPassed on empty = %v, %v", p, err)
	}
	put(t, b, "nightly", Result("p1", "checkout", experiments.Passed, t0))
	put(t, b, "nightly", Result("f1", "checkout", experiments.Failed, t0.Add(time.Hour)))
	put(t, b, "other", Result("p2", "checkout", experiments.Passed, t0.Add(2*time.Hour)))
	api := history.SummaryOf(Result("t1", "checkout", experiments.Failed, t0.Add(3*time.Hour)), "nightly", "api:ci")
	if err := b.Put(ctx, api, nil); err != nil {
		t.Fatal(err)
	}
	running := history.Summary{RunID: "u1", Schedule: "nightly", Runbook: "checkout", Trigger: "schedule", StartedAt: t0.Add(4 * time.Hour)}
	if err := b.Put(ctx, running, nil); err != nil {
		t.Fatal(err)
	}
	p, err := history.PreviousPassed(ctx, b, "nightly")
	if err != nil || p == nil || p.RunID != "p1" {
		t.Errorf("PreviousPassed(nightly) = %v, %v; want p1", p, err)
	}
	starts, err := history.ScheduledStarts(ctx, b, "nightly", t0.Add(30*time.Minute))
	if err != nil || len(starts) != 2 || !starts[0].Equal(t0.Add(time.Hour)) || !starts[1].Equal(t0.Add(4*time.Hour)) {
		t.Errorf("ScheduledStarts = %v, %v; want f1's and u1's (not the API trigger, not before since)", starts, err)
	}
}

func concurrentPuts(t *testing.T, b history.Backend) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := Result(fmt.Sprintf("c%02d", i), "rb", experiments.Passed, t0.Add(time.Duration(i)*time.Second))
			errs <- b.Put(ctx, history.SummaryOf(res, "s", "schedule"), res)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.List(ctx, history.Filter{})
	if err != nil || len(got) != 40 || got[0].RunID != "c39" || got[39].RunID != "c00" {
		t.Errorf("after 40 concurrent puts: %d runs, first %q, %v", len(got), ids(got[:min(1, len(got))]), err)
	}
}

func badInput(t *testing.T, b history.Backend) {
	ctx := context.Background()
	if err := b.Put(ctx, history.Summary{}, nil); err == nil {
		t.Error("Put without a run ID: no error")
	}
	res := Result("x", "rb", experiments.Passed, t0)
	if err := b.Put(ctx, history.Summary{RunID: "y"}, res); err == nil {
		t.Error("Put of a result under another run ID: no error")
	}
	if got, err := b.List(ctx, history.Filter{}); err != nil || len(got) != 0 {
		t.Errorf("bad puts stored something: %q, %v", ids(got), err)
	}
}
