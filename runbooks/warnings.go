package runbooks

import "fmt"

// Warnings lists what is valid but probably not what the author meant, as "path: message". They
// do not make a runbook invalid; `faultline validate` prints them.
func Warnings(rb *Runbook) []string {
	var out []string
	check := func(path string, gs []Guardrail) {
		for i, g := range gs {
			h := g.HTTP
			if h == nil || h.Timeout == 0 || h.MaxLatency == 0 || h.Timeout >= h.MaxLatency {
				continue
			}
			out = append(out, fmt.Sprintf("%s[%d].http.timeout: %s is below maxLatency %s: a response slower than the timeout reads as blind (no observation), not as a latency breach; drop timeout (it then follows maxLatency) or raise it",
				path, i, h.Timeout, h.MaxLatency))
		}
	}
	check("guardrails", rb.Guardrails)
	for i, x := range rb.Experiments {
		check(fmt.Sprintf("experiments[%d].hypothesis", i), x.Hypothesis)
	}
	return out
}
