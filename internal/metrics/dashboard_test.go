package metrics

import (
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/dashboard"
)

// Every metric the shipped Grafana dashboard queries must exist in what faultline exports; a
// renamed metric otherwise turns a panel silently empty.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	refs := dashboard.Refs(t, "../../deploy/grafana/faultline-dashboard.json")

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
	NewReload(m.Registry).Reloaded(true, time.Now())
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range families {
		have[f.GetName()] = true
	}

	checked := 0
	for _, r := range refs {
		if !have[r.Base] {
			t.Errorf("panel %q queries %s, which faultline does not export", r.Panel, r.Metric)
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("only %d metric references found in the dashboard; the test is not reading it", checked)
	}
}
