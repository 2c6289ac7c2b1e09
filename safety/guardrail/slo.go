package guardrail

import (
	"fmt"
	"strings"

	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/runbooks"
)

// SLOQuery expands the SLO shorthand of a Prometheus guardrail into the PromQL query it stands for
// and the bound the query's value must stay below (the comparison is always `<`):
//
//	errorRatio: sum(rate(M{selector,errorSelector}[W])) / sum(rate(M{selector}[W]))  <  max
//	latency:    histogram_quantile(Q, sum by (le) (rate(H_bucket{selector}[W])))     <  max
//
// Matchers are re-rendered from their parsed form (double-quoted, no spaces), so the query is the
// same whatever quoting the runbook used. docs/guardrails.md documents the same expansion.
func SLOQuery(s *runbooks.SLO) (query string, max float64, err error) {
	switch {
	case s == nil:
		return "", 0, fmt.Errorf("no slo given")
	case s.ErrorRatio != nil:
		e := s.ErrorRatio
		sel, err := runbooks.ParseMatchers(e.Selector)
		if err != nil {
			return "", 0, fmt.Errorf("slo.errorRatio.selector: %w", err)
		}
		errSel, err := runbooks.ParseMatchers(e.ErrorSelector)
		if err != nil {
			return "", 0, fmt.Errorf("slo.errorRatio.errorSelector: %w", err)
		}
		if len(errSel) == 0 {
			return "", 0, fmt.Errorf("slo.errorRatio.errorSelector is required")
		}
		w := promDuration(e.Window)
		errors := fmt.Sprintf("sum(rate(%s[%s]))", selector(e.Metric, append(append([]runbooks.Matcher{}, sel...), errSel...)), w)
		total := fmt.Sprintf("sum(rate(%s[%s]))", selector(e.Metric, sel), w)
		return errors + " / " + total, e.Max, nil
	case s.Latency != nil:
		l := s.Latency
		sel, err := runbooks.ParseMatchers(l.Selector)
		if err != nil {
			return "", 0, fmt.Errorf("slo.latency.selector: %w", err)
		}
		q := fmt.Sprintf("histogram_quantile(%s, sum by (le) (rate(%s[%s])))",
			formatFloat(l.Quantile), selector(l.Histogram+"_bucket", sel), promDuration(l.Window))
		return q, l.Max, nil
	}
	return "", 0, fmt.Errorf("slo sets neither errorRatio nor latency")
}

// selector renders name{m1,m2} (or just name with no matchers).
func selector(name string, ms []runbooks.Matcher) string {
	if len(ms) == 0 {
		return name
	}
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// promDuration writes a duration the way PromQL reads it (1m, 1m30s, 500ms; never 1m0s).
func promDuration(d runbooks.Duration) string { return model.Duration(d.D()).String() }
