package runbooks

import "testing"

func TestBaselineTolerance(t *testing.T) {
	b := &Baseline{Tolerance: "10%", Figures: map[string]string{"breakers/x/timeToClose": "5s", "timeToReady": "2", "opens": "50%"}}
	for _, c := range []struct {
		key, metric string
		want        Tolerance
	}{
		{"breakers/x/timeToClose", "timeToClose", Tolerance{Absolute: 5, IsAbs: true, Text: "5s"}},
		{"workloads/deployment a/b/timeToReady", "timeToReady", Tolerance{Absolute: 2, IsAbs: true, Text: "2"}},
		{"breakers/x/opens", "opens", Tolerance{Percent: 50, Text: "50%"}},
		{"engine/run/haltLatency", "haltLatency", Tolerance{Percent: 10, Text: "10%"}},
	} {
		if got := b.For(c.key, c.metric); got != c.want {
			t.Errorf("For(%q) = %+v, want %+v", c.key, got, c.want)
		}
	}
	var none *Baseline
	if got := none.For("a", "b"); got.Percent != 20 || got.IsAbs {
		t.Errorf("default tolerance %+v, want 20%%", got)
	}
}
