package runbooks

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultBaselineTolerance is how much worse than its baseline a recovery figure may get before a
// comparison calls it a regression, when the runbook says nothing.
const DefaultBaselineTolerance = "20%"

// Baseline tunes the comparison of a run with a baseline run (faultline run --baseline,
// faultline compare).
type Baseline struct {
	Tolerance string            `yaml:"tolerance,omitempty" json:"tolerance,omitempty" doc:"How much worse than the baseline a figure may get: a percentage of the baseline value (20%, the default), a duration (5s) or a plain number in the figure's unit."`
	Figures   map[string]string `yaml:"figures,omitempty" json:"figures,omitempty" doc:"Per-figure tolerances, keyed by a figure key (breakers/haproxy be_app/srv2/timeToClose) or a metric name (timeToClose); same forms as tolerance."`
}

// Tolerance is a parsed tolerance: Percent of the baseline value, or Absolute in the figure's
// unit (seconds for durations).
type Tolerance struct {
	Percent  float64
	Absolute float64
	IsAbs    bool
	Text     string
}

// ParseTolerance reads "20%", "5s", "1m30s" or a plain non-negative number.
func ParseTolerance(s string) (Tolerance, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 {
			return Tolerance{}, fmt.Errorf("%q is not a percentage, e.g. 20%%", s)
		}
		return Tolerance{Percent: v, Text: s}, nil
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		if v < 0 {
			return Tolerance{}, fmt.Errorf("%q must not be negative", s)
		}
		return Tolerance{Absolute: v, IsAbs: true, Text: s}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return Tolerance{}, fmt.Errorf("%q is not a tolerance: use a percentage (20%%), a duration (5s) or a number", s)
	}
	return Tolerance{Absolute: d.Seconds(), IsAbs: true, Text: s}, nil
}

// For returns the tolerance for a figure: by key, then by metric, then the default.
func (b *Baseline) For(key, metric string) Tolerance {
	def, _ := ParseTolerance(DefaultBaselineTolerance)
	if b == nil {
		return def
	}
	for _, k := range []string{key, metric} {
		if s, ok := b.Figures[k]; ok {
			if t, err := ParseTolerance(s); err == nil {
				return t
			}
		}
	}
	if b.Tolerance != "" {
		if t, err := ParseTolerance(b.Tolerance); err == nil {
			return t
		}
	}
	return def
}

func (b *Baseline) validate(v *Validator, path string) {
	if b == nil {
		return
	}
	if b.Tolerance != "" {
		if _, err := ParseTolerance(b.Tolerance); err != nil {
			v.Errorf(path+".tolerance", "%v", err)
		}
	}
	keys := make([]string, 0, len(b.Figures))
	for k := range b.Figures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.TrimSpace(k) == "" {
			v.Errorf(path+".figures", "a figure key must not be empty")
			continue
		}
		if _, err := ParseTolerance(b.Figures[k]); err != nil {
			v.Errorf(joinPath(path+".figures", k), "%v", err)
		}
	}
}
