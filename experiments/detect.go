package experiments

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/faultline-dev/faultline/safety/guardrail"
)

// detector remembers the first guardrail or hypothesis breach of the fault window: the moment
// the checks noticed the fault.
type detector struct {
	mu     sync.Mutex
	at     time.Time
	source string // guardrail, hypothesis
	b      guardrail.Breach
}

func (d *detector) breach(source string, b guardrail.Breach) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at.IsZero() || b.At.Before(d.at) {
		d.at, d.source, d.b = b.At, source, b
	}
}

// figure is the experiment's time to detect: from the first fault applied to the first breach of
// a guardrail or a hypothesis check. A breach is seen at an evaluation, so the condition may have
// started up to one evaluation interval earlier: that interval is the uncertainty.
func (d *detector) figure(first time.Time, guards, hyps []*guardrail.Guardrail) Figure {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := Figure{Key: engineRecorder + "/experiment/timeToDetect", Subject: "experiment", Metric: "timeToDetect", Unit: "s"}
	if d.at.IsZero() {
		f.Note = "no guardrail or hypothesis check breached during the fault window"
		if len(guards)+len(hyps) == 0 {
			f.Note = "the experiment has no guardrail or hypothesis check to detect the fault"
		}
		return f
	}
	v := max(d.at.Sub(first), 0).Seconds()
	f.Value = &v
	for _, g := range append(append([]*guardrail.Guardrail(nil), guards...), hyps...) {
		if g.Name == d.b.Guardrail {
			f.Uncertainty = g.Interval.Seconds()
		}
	}
	f.Note = fmt.Sprintf("%s %q breached: %s", d.source, d.b.Guardrail, d.b.Last.Detail)
	return f
}

// budgets measures, for every Prometheus guardrail with an errorRatio SLO, the share of its error
// budget the experiment burned between from (the first fault) and to (the end of the experiment):
// the error ratio over that span divided by the ratio the SLO allows (docs/recovery.md).
func (e *Engine) budgets(ctx context.Context, log *slog.Logger, guards []*guardrail.Guardrail, from, to time.Time) []Figure {
	var out []Figure
	for _, g := range guards {
		br, ok := g.Probe.(guardrail.ErrorBudgetReader)
		if !ok {
			continue
		}
		f := Figure{Key: engineRecorder + "/slo " + g.Name + "/budgetBurned", Subject: "slo " + g.Name, Metric: "budgetBurned", Unit: "ratio"}
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		b, err := br.ErrorBudget(qctx, from, to)
		cancel()
		switch {
		case err != nil:
			f.Note = "not measured: " + err.Error()
			log.Warn("error budget not measured", "guardrail", g.Name, "err", err)
		case b.ErrorRatio == nil:
			f.Note = fmt.Sprintf("not measured: no requests counted over the %s of the experiment (%s)", b.Span, b.Query)
		default:
			v := *b.ErrorRatio / b.Max
			f.Value = &v
			f.Note = fmt.Sprintf("error ratio %.4g over the %s from the first fault to the end of the experiment, against %g allowed", *b.ErrorRatio, b.Span, b.Max)
		}
		out = append(out, f)
	}
	return out
}
