package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestAPIRequests(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewAPI(reg)
	if err != nil {
		t.Fatal(err)
	}
	a.Request("POST /api/v1/halt", 200)
	// A second server on the same registry counts into the same series.
	b, err := NewAPI(reg)
	if err != nil {
		t.Fatal(err)
	}
	b.Request("POST /api/v1/halt", 200)
	b.Request("unmatched", 404)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "faultline_api_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"code=200 route=POST /api/v1/halt ": 2, "code=404 route=unmatched ": 1}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s= %g, want %g", k, got[k], v)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(fams).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	var nilAPI *API
	nilAPI.Request("x", 200) // must not panic
}
