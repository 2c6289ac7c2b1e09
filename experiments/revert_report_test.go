package experiments

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/local"
)

// reporting is gated whose revert also tells the result something (injectors.RevertReporter).
type reporting struct{ gated }

func (r reporting) RevertReport(ctx context.Context, record json.RawMessage, env injectors.Env) ([]injectors.Event, error) {
	var rec gatedRecord
	if err := json.Unmarshal(record, &rec); err != nil {
		return nil, err
	}
	if err := r.Revert(ctx, record, env); err != nil {
		return nil, err
	}
	return []injectors.Event{{Time: time.Now(), Message: "revert of " + rec.Fault + " closed 3 relayed connections"}}, nil
}

// The events a RevertReporter returns are the fault's, in the result.
func TestRevertReportEventsAreRecorded(t *testing.T) {
	vs := local.StartVictims(t, 2)
	eng, _ := newEngine(t, reporting{})
	rb := parse(t, header+"experiments:\n  - name: x\n    duration: 100ms\n    faults:\n%s", pauseFaults(vs))
	res := eng.Run(context.Background(), rb, RunOptions{})
	if res.Verdict != Passed {
		t.Fatalf("verdict %s, want passed: %s", res.Verdict, res.Reason)
	}
	for i, v := range vs {
		if v.State() == "T" {
			t.Errorf("victim %d still stopped", i)
		}
	}
	for _, f := range res.Experiments[0].Faults {
		if len(f.Events) != 1 || !strings.Contains(f.Events[0].Message, "revert of "+f.Name+" closed 3") {
			t.Errorf("fault %s events %+v, want its revert's", f.Name, f.Events)
		}
		if f.RevertedAt == nil {
			t.Errorf("fault %s: no revertedAt", f.Name)
		}
	}
}
