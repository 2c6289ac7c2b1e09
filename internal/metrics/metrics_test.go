package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// wantTypes is every faultline series family and its type. The end-to-end test in cmd/faultline
// checks the same families on a real Prometheus that scraped `faultline run --metrics-addr`.
func wantTypes() map[string]dto.MetricType {
	return map[string]dto.MetricType{
		"faultline_experiments_total":                           dto.MetricType_COUNTER,
		"faultline_active_faults":                               dto.MetricType_GAUGE,
		"faultline_faults_applied_total":                        dto.MetricType_COUNTER,
		"faultline_faults_reverted_total":                       dto.MetricType_COUNTER,
		"faultline_revert_failures_total":                       dto.MetricType_COUNTER,
		"faultline_guardrail_evaluations_total":                 dto.MetricType_COUNTER,
		"faultline_guardrail_evaluation_duration_seconds":       dto.MetricType_HISTOGRAM,
		"faultline_guardrail_last_evaluation_timestamp_seconds": dto.MetricType_GAUGE,
		"faultline_guardrail_failing":                           dto.MetricType_GAUGE,
		"faultline_guardrail_breaches_total":                    dto.MetricType_COUNTER,
		"faultline_halt_latency_seconds":                        dto.MetricType_HISTOGRAM,
		"faultline_ledger_entries_outstanding":                  dto.MetricType_GAUGE,
		"go_build_info":                                         dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                             dto.MetricType_COUNTER,
	}
}

func TestExposition(t *testing.T) {
	m := New()
	m.Experiment("halted")
	m.FaultApplied("process-pause")
	m.FaultApplied("process-pause")
	m.FaultReverted("process-pause", true)
	m.FaultReverted("process-pause", false)
	m.Evaluation("error-ratio", "prometheus", "pass", 3*time.Millisecond)
	m.Evaluation("error-ratio", "prometheus", "fail", 4*time.Millisecond)
	m.Evaluation("api", "http", "pass", time.Millisecond)
	m.Breach("error-ratio", "prometheus")
	m.HaltLatency(120 * time.Millisecond)
	m.LedgerOutstanding(1)

	srv := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	for name, typ := range wantTypes() {
		f, ok := fams[name]
		if !ok {
			t.Errorf("%s missing from the exposition", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s has type %s, want %s", name, f.GetType(), typ)
		}
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		for _, mt := range fams[name].GetMetric() {
			match := true
			for k, v := range labels {
				found := false
				for _, lp := range mt.GetLabel() {
					found = found || (lp.GetName() == k && lp.GetValue() == v)
				}
				match = match && found
			}
			if match {
				switch {
				case mt.Counter != nil:
					return mt.Counter.GetValue()
				case mt.Gauge != nil:
					return mt.Gauge.GetValue()
				case mt.Histogram != nil:
					return float64(mt.Histogram.GetSampleCount())
				}
			}
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"faultline_experiments_total", map[string]string{"verdict": "halted"}, 1},
		{"faultline_experiments_total", map[string]string{"verdict": "passed"}, 0}, // initialised
		{"faultline_active_faults", map[string]string{"kind": "process-pause"}, 0},
		{"faultline_faults_applied_total", map[string]string{"kind": "process-pause"}, 2},
		{"faultline_faults_reverted_total", map[string]string{"kind": "process-pause"}, 1},
		{"faultline_revert_failures_total", map[string]string{"kind": "process-pause"}, 1},
		{"faultline_guardrail_evaluations_total", map[string]string{"guardrail": "error-ratio", "result": "fail"}, 1},
		{"faultline_guardrail_failing", map[string]string{"guardrail": "error-ratio"}, 1},
		{"faultline_guardrail_failing", map[string]string{"guardrail": "api"}, 0},
		{"faultline_guardrail_breaches_total", map[string]string{"guardrail": "error-ratio", "kind": "prometheus"}, 1},
		{"faultline_halt_latency_seconds", nil, 1},
		{"faultline_guardrail_evaluation_duration_seconds", map[string]string{"kind": "prometheus"}, 2},
		{"faultline_ledger_entries_outstanding", nil, 1},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
	if ts := value("faultline_guardrail_last_evaluation_timestamp_seconds", map[string]string{"guardrail": "api"}); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last evaluation timestamp %g is not now", ts)
	}

	// Names, units, suffixes and help texts follow the Prometheus conventions.
	gathered, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(gathered).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestNilMetricsIsSafe(t *testing.T) {
	var m *Metrics
	m.Experiment("passed")
	m.FaultApplied("k")
	m.FaultReverted("k", true)
	m.Evaluation("g", "http", "pass", 0)
	m.Breach("g", "http")
	m.HaltLatency(0)
	m.LedgerOutstanding(0)
}
