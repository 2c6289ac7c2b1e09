package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Every metric the shipped Grafana dashboard queries must exist in what faultline exports; a
// renamed metric otherwise turns a panel silently empty.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/faultline-dashboard.json")
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
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}

	m := New()
	d := NewDaemon(m.Registry)
	api, err := NewAPI(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	// Vectors appear in a gather only once a label set exists.
	m.Experiment("passed")
	m.FaultApplied("process-pause")
	m.Evaluation("g", "http", "pass", time.Millisecond)
	m.Breach("g", "http")
	m.HaltLatency(time.Millisecond)
	m.LedgerOutstanding(0)
	d.SetLeader(true)
	d.NextStart("s", time.Now())
	d.Run("s", "passed")
	api.Request("GET /api/v1/status", 200)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range families {
		have[f.GetName()] = true
	}

	name := regexp.MustCompile(`faultline_[a-z_]+`)
	checked := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suffix)
				}
				if !have[base] {
					t.Errorf("panel %q queries %s, which faultline does not export", p.Title, n)
				}
				checked++
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d metric references found in the dashboard; the test is not reading it", checked)
	}
}
