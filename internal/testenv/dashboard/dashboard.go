// Package dashboard reads what a shipped Grafana dashboard queries, so that a test can check that
// every metric it names is exported: a renamed metric otherwise turns a panel silently empty.
package dashboard

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Ref is one metric name in one panel's query.
type Ref struct {
	Panel  string
	Metric string // as written, e.g. faultline_halt_latency_seconds_bucket
	Base   string // the family it belongs to: Metric without a histogram's _bucket, _sum or _count
}

var metricName = regexp.MustCompile(`faultline_[a-z_]+`)

// Refs lists every faultline_* metric the dashboard at path queries, failing the test when the
// file cannot be read or is not a dashboard.
func Refs(t testing.TB, path string) []Ref {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard %s is not valid JSON: %v", path, err)
	}
	var refs []Ref
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				base := n
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suffix)
				}
				refs = append(refs, Ref{Panel: p.Title, Metric: n, Base: base})
			}
		}
	}
	return refs
}
