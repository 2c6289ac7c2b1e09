package promstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// benchStore is the demo's worst case kept in memory: 100 series scraped every 250ms for the
// whole 30-minute retention (720,000 samples).
func benchStore(b *testing.B) (*Store, int64) {
	b.Helper()
	st := NewStore((30 * time.Minute).Milliseconds())
	const n = 7200
	end := time.Now().UnixMilli()
	for s := range 100 {
		ls := labels.FromStrings("__name__", "req_total", "code", fmt.Sprint(200+s%5), "shard", fmt.Sprint(s))
		for i := range n {
			st.Append(ls, end-int64(n-i)*250, float64(i))
		}
	}
	return st, end
}

func BenchmarkInstantQueryRate(b *testing.B) {
	st, end := benchStore(b)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 5_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	at := time.UnixMilli(end)
	b.ResetTimer()
	for b.Loop() {
		q, err := eng.NewInstantQuery(context.Background(), st, nil, `sum by (code) (rate(req_total[1m]))`, at)
		if err != nil {
			b.Fatal(err)
		}
		if r := q.Exec(context.Background()); r.Err != nil {
			b.Fatal(r.Err)
		}
		q.Close()
	}
}

func BenchmarkRangeQueryRate(b *testing.B) {
	st, end := benchStore(b)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	to := time.UnixMilli(end)
	b.ResetTimer()
	for b.Loop() {
		q, err := eng.NewRangeQuery(context.Background(), st, nil, `sum by (code) (rate(req_total[5s]))`, to.Add(-5*time.Minute), to, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if r := q.Exec(context.Background()); r.Err != nil {
			b.Fatal(r.Err)
		}
		q.Close()
	}
}

func BenchmarkAppend(b *testing.B) {
	st := NewStore((30 * time.Minute).Milliseconds())
	ls := make([]labels.Labels, 100)
	for i := range ls {
		ls[i] = labels.FromStrings("__name__", "req_total", "shard", fmt.Sprint(i))
	}
	var t int64
	for b.Loop() {
		t++
		st.Append(ls[t%100], t, 1)
	}
}
