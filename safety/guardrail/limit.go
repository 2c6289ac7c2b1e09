package guardrail

// Limiter is implemented by probes whose check compares one number with a fixed limit, so that
// a report can draw the limit next to the observed values.
type Limiter interface {
	// Limit returns the limit and the comparison that passes ("<=", ">", ...), in the unit of
	// Observation.Value.
	Limit() (limit float64, op string, ok bool)
}

func (p *httpProbe) Limit() (float64, string, bool) {
	if p.maxLatency <= 0 {
		return 0, "", false
	}
	return p.maxLatency.Seconds(), "<=", true
}

func (p *prometheusProbe) Limit() (float64, string, bool) {
	return p.threshold, p.op.sym, true
}
