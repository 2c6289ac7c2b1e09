package promstore

import (
	"context"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/internal/testenv/prom"
)

// The embedded Prometheus answers as the real Prometheus server does: both scrape the same target
// every 250ms while the test drives steady traffic into it, and the same queries, evaluated at the
// same instant, agree within what the two scrape phases explain.
func TestMatchesRealPrometheus(t *testing.T) {
	real := prom.Start(t, prom.WithScrapeInterval(250*time.Millisecond))
	emb, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Close() })
	emb.AddTarget(Target{Job: prom.TargetJob, Addr: real.Target.Addr})
	ea := embAPI(t, emb)

	// Steady traffic: 100 requests/s, one in five a 500, latencies cycling through the buckets.
	// Bounded in count and time.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		lat := []float64{0.03, 0.07, 0.15, 0.25, 0.4, 0.08, 0.12, 0.18, 0.06, 0.9}
		for i := 0; i < 4000; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			code := "200"
			if i%5 == 0 {
				code = "500"
			}
			real.Target.Requests.WithLabelValues("checkout", code).Inc()
			real.Target.Latency.WithLabelValues("/pay").Observe(lat[i%len(lat)])
		}
	}()
	defer func() { cancel(); <-done }()

	// 8 s of traffic in both, then evaluate 1 s in the past (both have ingested it).
	if err := poll(ctx, 100*time.Millisecond, func() bool {
		v, _, _, err := ea.Query(ctx, "count_over_time(test_requests_total{code=\"200\"}[10s])", time.Time{})
		return err == nil && len(v.(model.Vector)) == 1 && v.(model.Vector)[0].Value >= 32
	}); err != nil {
		t.Fatalf("embedded prometheus did not collect 8s of samples: %v", err)
	}
	at := time.Now().Add(-time.Second)
	if _, err := real.WaitIngested(ctx, at); err != nil {
		t.Fatalf("real prometheus: %v", err)
	}

	instant := []struct {
		q   string
		tol float64 // relative
	}{
		{`sum by (code) (rate(test_requests_total[3s]))`, 0.2},
		{`histogram_quantile(0.9, sum by (le) (rate(test_request_duration_seconds_bucket[3s])))`, 0.2},
		{`sum(rate(test_requests_total{code="500"}[3s])) / sum(rate(test_requests_total[3s]))`, 0.2},
		{`scalar(sum(rate(test_requests_total[3s])))`, 0.2},
		{`up{job="target"}`, 0},
	}
	for _, c := range instant {
		rv, _, _, err := real.API().Query(ctx, c.q, at)
		if err != nil {
			t.Fatalf("real %s: %v", c.q, err)
		}
		ev, _, _, err := ea.Query(ctx, c.q, at)
		if err != nil {
			t.Fatalf("embedded %s: %v", c.q, err)
		}
		compare(t, c.q, rv, ev, c.tol)
	}
	rng := promv1.Range{Start: at.Add(-3 * time.Second).Truncate(time.Second), End: at.Truncate(time.Second), Step: 500 * time.Millisecond}
	q := `sum by (code) (rate(test_requests_total[2s]))`
	rv, _, _, err := real.API().QueryRange(ctx, q, rng)
	if err != nil {
		t.Fatal(err)
	}
	ev, _, _, err := ea.QueryRange(ctx, q, rng)
	if err != nil {
		t.Fatal(err)
	}
	compare(t, "range "+q, rv, ev, 0.25)
}

func embAPI(t *testing.T, s *Server) promv1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(c)
}

// compare checks that two results have the same type, the same series (by labels) and values
// within tol (relative, or absolute below 1).
func compare(t *testing.T, q string, real, emb model.Value, tol float64) {
	t.Helper()
	if real.Type() != emb.Type() {
		t.Fatalf("%s: real %s, embedded %s", q, real.Type(), emb.Type())
	}
	near := func(a, b float64) bool {
		if math.IsNaN(a) || math.IsNaN(b) {
			return math.IsNaN(a) && math.IsNaN(b)
		}
		return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
	}
	switch r := real.(type) {
	case *model.Scalar:
		e := emb.(*model.Scalar)
		if r.Timestamp != e.Timestamp || !near(float64(r.Value), float64(e.Value)) {
			t.Errorf("%s: real %v, embedded %v", q, r, e)
		}
	case model.Vector:
		e := emb.(model.Vector)
		sortVec(r)
		sortVec(e)
		if len(r) != len(e) {
			t.Fatalf("%s: real %v, embedded %v", q, r, e)
		}
		for i := range r {
			if !r[i].Metric.Equal(e[i].Metric) || r[i].Timestamp != e[i].Timestamp || !near(float64(r[i].Value), float64(e[i].Value)) {
				t.Errorf("%s: real %v, embedded %v", q, r[i], e[i])
			}
		}
		t.Logf("%s: real %v, embedded %v", q, r, e)
	case model.Matrix:
		e := emb.(model.Matrix)
		sort.Sort(r)
		sort.Sort(e)
		if len(r) != len(e) {
			t.Fatalf("%s: real %v, embedded %v", q, r, e)
		}
		for i := range r {
			if !r[i].Metric.Equal(e[i].Metric) || len(r[i].Values) != len(e[i].Values) {
				t.Fatalf("%s: real %v, embedded %v", q, r[i], e[i])
			}
			for j := range r[i].Values {
				if r[i].Values[j].Timestamp != e[i].Values[j].Timestamp || !near(float64(r[i].Values[j].Value), float64(e[i].Values[j].Value)) {
					t.Errorf("%s: point %d: real %v, embedded %v", q, j, r[i].Values[j], e[i].Values[j])
				}
			}
		}
	}
}

func sortVec(v model.Vector) {
	sort.Slice(v, func(i, j int) bool { return v[i].Metric.Before(v[j].Metric) })
}
