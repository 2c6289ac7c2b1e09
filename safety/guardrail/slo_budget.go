package guardrail

import (
	"context"
	"fmt"
	"math"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/runbooks"
)

// ErrorBudgetReader is implemented by the probe of a Prometheus guardrail with an errorRatio SLO:
// the engine asks it how much of the error budget an experiment burned.
type ErrorBudgetReader interface {
	ErrorBudget(ctx context.Context, from, to time.Time) (ErrorBudget, error)
}

// ErrorBudget is an SLO's error ratio measured over one span.
type ErrorBudget struct {
	// Query is the PromQL evaluated at the end of the span.
	Query string
	Span  time.Duration
	// ErrorRatio is errors / requests over the span; nil when no request was counted.
	ErrorRatio *float64
	// Max is the ratio the SLO allows.
	Max float64
}

// budgetQuery is the SLO's error ratio over a span instead of its rate() window:
//
//	(sum(increase(M{selector,errorSelector}[span])) or vector(0)) / sum(increase(M{selector}[span]))
//
// "or vector(0)" because an error counter that never moved may not exist at all.
func budgetQuery(e *runbooks.ErrorRatioSLO, span time.Duration) (string, error) {
	sel, err := runbooks.ParseMatchers(e.Selector)
	if err != nil {
		return "", fmt.Errorf("slo.errorRatio.selector: %w", err)
	}
	errSel, err := runbooks.ParseMatchers(e.ErrorSelector)
	if err != nil {
		return "", fmt.Errorf("slo.errorRatio.errorSelector: %w", err)
	}
	w := model.Duration(span).String()
	errs := fmt.Sprintf("sum(increase(%s[%s]))", selector(e.Metric, append(append([]runbooks.Matcher{}, sel...), errSel...)), w)
	total := fmt.Sprintf("sum(increase(%s[%s]))", selector(e.Metric, sel), w)
	return "(" + errs + " or vector(0)) / " + total, nil
}

// errorRatioProbe is the probe of a Prometheus guardrail with an errorRatio SLO; only it is an
// ErrorBudgetReader, so that the engine measures a budget exactly where one is defined.
type errorRatioProbe struct{ *prometheusProbe }

// ErrorBudget implements ErrorBudgetReader.
func (p *errorRatioProbe) ErrorBudget(ctx context.Context, from, to time.Time) (ErrorBudget, error) {
	// Whole seconds, rounded up, so that the span covers the experiment; PromQL needs a range.
	span := max(to.Sub(from).Round(time.Second), time.Second)
	if span < to.Sub(from) {
		span += time.Second
	}
	q, err := budgetQuery(p.errorRatio, span)
	if err != nil {
		return ErrorBudget{}, err
	}
	b := ErrorBudget{Query: q, Span: span, Max: p.errorRatio.Max}
	val, _, _, err := p.api.Query(ctx, q, to, promv1.WithTimeout(p.serverTimeout))
	if err != nil {
		return b, fmt.Errorf("query %s: %w", p.address, err)
	}
	var v float64
	switch r := val.(type) {
	case *model.Scalar:
		v = float64(r.Value)
	case model.Vector:
		if len(r) == 0 {
			return b, nil
		}
		v = float64(r[0].Value)
	default:
		return b, fmt.Errorf("query returned a %s, want a vector", val.Type())
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return b, nil // no requests: 0/0
	}
	b.ErrorRatio = &v
	return b, nil
}
