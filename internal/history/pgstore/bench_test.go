package pgstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/history"
	"github.com/faultline-dev/faultline/internal/history/historytest"
	"github.com/faultline-dev/faultline/internal/testenv/pg"
)

const (
	benchRuns      = 100_000
	benchSchedules = 20 // 5,000 runs each
	benchBatch     = 5_000
)

// loadRuns fills b with benchRuns runs, one a minute, round robin over the schedules, plus one
// run of "rare" every 2,000 runs (50 in all, spread over the whole history).
func loadRuns(tb testing.TB, bb historytest.Batcher) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]history.Record, 0, benchBatch)
	flush := func() {
		if err := bb.PutBatch(context.Background(), recs); err != nil {
			tb.Fatal(err)
		}
		recs = recs[:0]
	}
	for i := range benchRuns {
		sched := fmt.Sprintf("s%02d", i%benchSchedules)
		if i%2000 == 0 {
			sched = "rare"
		}
		res := historytest.Result(fmt.Sprintf("run-%06d", i), "rb-"+sched, experiments.Passed, t0.Add(time.Duration(i)*time.Minute))
		recs = append(recs, history.Record{Summary: history.SummaryOf(res, sched, "schedule"), Result: res})
		if len(recs) == benchBatch {
			flush()
		}
	}
	flush()
}

// BenchmarkHistory100k compares the stores with 100,000 runs stored, in one run: the last 50
// runs of a schedule (p99 reported), and the cost of writing one run's result. The PostgreSQL
// server keeps fsync on, as bbolt syncs each commit.
//
//	go test -run '^$' -bench BenchmarkHistory100k -benchtime 2000x ./internal/history/pgstore/
func BenchmarkHistory100k(b *testing.B) {
	srv := pg.Start(b, pg.Durable())
	ctx := context.Background()
	bolt, err := history.Open(ctx, filepath.Join(b.TempDir(), "history.db"), history.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer bolt.Close()
	pgs := openStore(b, srv.NewDatabase(b), history.Options{})
	defer pgs.Close()
	stores := []struct {
		name string
		s    history.Backend
	}{{"bbolt", bolt}, {"postgres", pgs}}
	for _, st := range stores {
		start := time.Now()
		loadRuns(b, st.s.(historytest.Batcher))
		b.Logf("%s: %d runs loaded in %s", st.name, benchRuns, time.Since(start).Round(time.Millisecond))
	}
	for _, q := range []struct {
		name string
		f    history.Filter
	}{
		{"last50-of-schedule", history.Filter{Schedule: "s07", Limit: 50}},
		{"last50-of-rare-schedule", history.Filter{Schedule: "rare", Limit: 50}},
	} {
		for _, st := range stores {
			b.Run(st.name+"/"+q.name, func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				for range b.N {
					t := time.Now()
					got, err := st.s.List(ctx, q.f)
					lat = append(lat, time.Since(t))
					if err != nil || len(got) != 50 {
						b.Fatalf("List: %d runs, %v", len(got), err)
					}
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			})
		}
	}
	for _, st := range stores {
		b.Run(st.name+"/put-result", func(b *testing.B) {
			t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
			for i := range b.N {
				res := historytest.Result(fmt.Sprintf("put-%s-%d", st.name, i), "rb", experiments.Passed, t0.Add(time.Duration(i)*time.Second))
				if err := st.s.Put(ctx, history.SummaryOf(res, "s07", "schedule"), res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
