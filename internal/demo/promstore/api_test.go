package promstore

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/internal/testenv/prom"
)

// startEmbedded starts a Server scraping a real client_golang target at 250ms.
func startEmbedded(t *testing.T) (*Server, *prom.Target, promv1.API) {
	t.Helper()
	s, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	tg := prom.StartTarget(t)
	s.AddTarget(Target{Job: "target", Addr: tg.Addr})
	c, err := api.NewClient(api.Config{Address: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return s, tg, promv1.NewAPI(c)
}

func waitQuery(t *testing.T, a promv1.API, q string, cond func(model.Value) bool) model.Value {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last model.Value
	err := poll(ctx, 50*time.Millisecond, func() bool {
		v, _, _, err := a.Query(ctx, q, time.Time{})
		last = v
		return err == nil && cond(v)
	})
	if err != nil {
		t.Fatalf("%s: never as wanted (last %v): %v", q, last, err)
	}
	return last
}

func poll(ctx context.Context, every time.Duration, cond func() bool) error {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
	return nil
}

// The client faultline's guardrails and recorders use (POST, falling back to GET) reads every
// result type and the error type of a bad query.
func TestAPIResultTypesWithPrometheusClient(t *testing.T) {
	_, tg, a := startEmbedded(t)
	tg.Value.WithLabelValues("a").Set(42)
	v := waitQuery(t, a, `test_value{series="a"}`, func(v model.Value) bool { return len(v.(model.Vector)) == 1 })
	s := v.(model.Vector)[0]
	if s.Value != 42 || s.Metric["job"] != "target" || s.Metric["instance"] != model.LabelValue(tg.Addr) {
		t.Fatalf("vector sample %v, want 42 with job and instance", s)
	}
	ctx := context.Background()
	sc, _, _, err := a.Query(ctx, "scalar(test_value) * 2", time.Time{})
	if err != nil || sc.Type() != model.ValScalar || float64(sc.(*model.Scalar).Value) != 84 {
		t.Fatalf("scalar: %v, %v", sc, err)
	}
	// An instant query of a range selector returns the raw samples (the breaker recorder reads
	// exact scrape times this way).
	m, _, _, err := a.Query(ctx, "test_value[10s]", time.Time{})
	if err != nil || m.Type() != model.ValMatrix || len(m.(model.Matrix)) != 1 || len(m.(model.Matrix)[0].Values) == 0 {
		t.Fatalf("raw samples: %v, %v", m, err)
	}
	waitQuery(t, a, "count_over_time(up[5s])", func(v model.Value) bool {
		return len(v.(model.Vector)) == 1 && v.(model.Vector)[0].Value >= 6
	})
	now := time.Now()
	r, _, _, err := a.QueryRange(ctx, "up", promv1.Range{Start: now.Add(-2 * time.Second), End: now, Step: 500 * time.Millisecond})
	if err != nil || r.Type() != model.ValMatrix || len(r.(model.Matrix)) != 1 || len(r.(model.Matrix)[0].Values) < 2 {
		t.Fatalf("range query: %v, %v", r, err)
	}
	_, _, _, err = a.Query(ctx, "sum(", time.Time{})
	var perr *promv1.Error
	if !errors.As(err, &perr) || perr.Type != promv1.ErrBadData || !strings.Contains(perr.Msg, "invalid parameter \"query\"") {
		t.Fatalf("bad query: %v, want a bad_data error", err)
	}
	_, _, _, err = a.QueryRange(ctx, "up", promv1.Range{Start: now, End: now.Add(-time.Second), Step: time.Second})
	if !errors.As(err, &perr) || perr.Type != promv1.ErrBadData {
		t.Fatalf("end before start: %v, want a bad_data error", err)
	}
}

// The exact JSON of the HTTP API, over GET.
func TestAPIJSONShapes(t *testing.T) {
	s, _, _ := startEmbedded(t)
	get := func(path string, q url.Values) (int, map[string]any) {
		resp, err := http.Get(s.URL() + path + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
		return resp.StatusCode, m
	}
	code, m := get("/api/v1/query", url.Values{"query": {"1.5"}, "time": {"1700000000.123"}})
	want := `{"data":{"result":[1700000000.123,"1.5"],"resultType":"scalar"},"status":"success"}`
	if b, _ := json.Marshal(m); code != 200 || string(b) != want {
		t.Fatalf("scalar: %d %s, want %s", code, b, want)
	}
	code, m = get("/api/v1/query", url.Values{"query": {"vector(1) / 0"}, "time": {"1700000000"}})
	want = `{"data":{"result":[{"metric":{},"value":[1700000000,"+Inf"]}],"resultType":"vector"},"status":"success"}`
	if b, _ := json.Marshal(m); code != 200 || string(b) != want {
		t.Fatalf("vector: %d %s, want %s", code, b, want)
	}
	code, m = get("/api/v1/query_range", url.Values{"query": {"up"}, "start": {"1"}, "end": {"2"}, "step": {"0"}})
	if code != http.StatusBadRequest || m["status"] != "error" || m["errorType"] != "bad_data" || !strings.Contains(m["error"].(string), "zero or negative query resolution step") {
		t.Fatalf("step 0: %d %v", code, m)
	}
	code, m = get("/api/v1/query", url.Values{"query": {"rate(up)"}})
	if code != http.StatusBadRequest || m["errorType"] != "bad_data" {
		t.Fatalf("rate of an instant vector: %d %v", code, m)
	}
}

// A target that is no longer scraped is marked stale at once, as Prometheus does, instead of
// answering from its last sample for the 5-minute lookback.
func TestStalenessWhenTargetRemoved(t *testing.T) {
	s, tg, a := startEmbedded(t)
	tg.Value.WithLabelValues("a").Set(1)
	waitQuery(t, a, "test_value", func(v model.Value) bool { return len(v.(model.Vector)) == 1 })
	s.RemoveTarget(Target{Job: "target", Addr: tg.Addr})
	waitQuery(t, a, "test_value", func(v model.Value) bool { return len(v.(model.Vector)) == 0 })
}

// Samples older than the retention are dropped, and series left empty with them.
func TestRetention(t *testing.T) {
	st := NewStore(1000)
	ls := func(v string) labelsT { return labelsFrom("__name__", "x", "s", v) }
	st.Append(ls("old"), 0, 1)
	st.Append(ls("new"), 500, 1)
	st.Append(ls("new"), 1500, 2)
	st.Append(ls("new"), 1400, 3) // out of order: dropped
	st.Truncate(2000)
	if n := st.NumSeries(); n != 1 {
		t.Fatalf("%d series after truncation, want 1", n)
	}
	q, _ := st.Querier(0, 3000)
	ss := q.Select(context.Background(), true, nil)
	var got []float64
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			got = append(got, v)
		}
	}
	if len(got) != 1 || got[0] != 2 {
		t.Fatalf("samples %v, want [2]", got)
	}
}
