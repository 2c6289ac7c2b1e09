package experiments

// The comparison of a run with a baseline run (report.Compare makes it; the result document
// carries it so that every report of the run shows the deltas).

// Figure comparison statuses.
const (
	StatusOK        = "ok"        // within tolerance (or better)
	StatusRegressed = "regressed" // worse than the baseline by more than the tolerance
	StatusMissing   = "missing"   // in the baseline, not in this run (the experiment was not reached, a recorder is gone)
	StatusNew       = "new"       // in this run, not in the baseline
	StatusUnreached = "unreached" // in both, but this run never reached it (a breaker that never closed)
)

// BaselineComparison is a run compared with a baseline run.
type BaselineComparison struct {
	BaselineRunID string `json:"baselineRunId"`
	// DigestChanged is set when the two runs come from different runbook contents.
	DigestChanged bool              `json:"digestChanged,omitempty"`
	Warnings      []string          `json:"warnings,omitempty"`
	Experiments   []ExperimentDelta `json:"experiments"`
}

// ExperimentDelta is one experiment's figures against the baseline's experiment of the same name.
type ExperimentDelta struct {
	Name    string        `json:"name"`
	Figures []FigureDelta `json:"figures"`
}

// FigureDelta is one figure against its baseline.
type FigureDelta struct {
	Key       string   `json:"key"`
	Metric    string   `json:"metric"`
	Unit      string   `json:"unit"`
	Baseline  *float64 `json:"baseline,omitempty"`
	Current   *float64 `json:"current,omitempty"`
	Tolerance string   `json:"tolerance"`
	Status    string   `json:"status"`
	// Detail says why, in words: "12.0s, baseline 8.0s, +50% > tolerance 20%".
	Detail string `json:"detail"`
}

// Failing reports whether the comparison fails the run: a regressed, unreached or missing figure.
// A figure that is new in this run has nothing to be compared with and does not fail it.
func (d FigureDelta) Failing() bool {
	return d.Status == StatusRegressed || d.Status == StatusUnreached || d.Status == StatusMissing
}

// Failures lists the figures that fail the run.
func (c *BaselineComparison) Failures() []FigureDelta {
	if c == nil {
		return nil
	}
	var out []FigureDelta
	for _, x := range c.Experiments {
		for _, f := range x.Figures {
			if f.Failing() {
				out = append(out, f)
			}
		}
	}
	return out
}

// Delta finds a figure's comparison, or nil.
func (c *BaselineComparison) Delta(experiment, key string) *FigureDelta {
	if c == nil {
		return nil
	}
	for i := range c.Experiments {
		if c.Experiments[i].Name != experiment {
			continue
		}
		for j := range c.Experiments[i].Figures {
			if c.Experiments[i].Figures[j].Key == key {
				return &c.Experiments[i].Figures[j]
			}
		}
	}
	return nil
}
