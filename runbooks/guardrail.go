package runbooks

// Guardrail is a check that watches the system. Exactly one probe (http, ...) is set; the common
// fields say how often it runs and how much failure it takes to count as a breach.
type Guardrail struct {
	Name     string    `yaml:"name" json:"name"`
	Interval Duration  `yaml:"interval,omitempty" json:"interval,omitempty" doc:"How often to evaluate (default 1s, at least 250ms)."`
	For      Threshold `yaml:"for,omitempty" json:"for,omitempty" schema:"threshold" doc:"How long it must keep failing to breach: a count of consecutive failed evaluations (3) or a duration (5s). Default 1."`
	OnError  string    `yaml:"onError,omitempty" json:"onError,omitempty" enum:"fail,ignore" doc:"When the source cannot be reached: fail (default; counts as failing, fail closed) or ignore (recorded as a gap)."`

	HTTP *HTTPProbe `yaml:"http,omitempty" json:"http,omitempty" probe:"http"`

	Prometheus *PrometheusProbe `yaml:"prometheus,omitempty" json:"prometheus,omitempty" probe:"prometheus"`

	Kubernetes *KubernetesProbe `yaml:"kubernetes,omitempty" json:"kubernetes,omitempty" probe:"kubernetes"`

	Load *LoadProbe `yaml:"load,omitempty" json:"load,omitempty" probe:"load" doc:"Client-side figures of the runbook's own load (latency quantiles, error ratio) over a sliding window."`
}

// ProbeKind names the probe that is set, or "".
func (g *Guardrail) ProbeKind() string {
	m := setMembers(g, "probe")
	if len(m) == 0 {
		return ""
	}
	return m[0].tag
}

// Probe returns the probe's settings (e.g. *HTTPProbe).
func (g *Guardrail) Probe() any {
	m := setMembers(g, "probe")
	if len(m) == 0 {
		return nil
	}
	return m[0].value
}

// HTTPProbe checks an HTTP endpoint's status and latency.
type HTTPProbe struct {
	URL                string            `yaml:"url" json:"url"`
	Method             string            `yaml:"method,omitempty" json:"method,omitempty" doc:"Default GET."`
	Headers            map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	Body               string            `yaml:"body,omitempty" json:"body,omitempty"`
	ExpectStatus       []string          `yaml:"expectStatus,omitempty" json:"expectStatus,omitempty" doc:"Accepted status codes: exact (200), a class (2xx) or a range (200-299). Default 2xx."`
	MaxLatency         Duration          `yaml:"maxLatency,omitempty" json:"maxLatency,omitempty" doc:"A response slower than this fails the check. 0 means no limit."`
	Timeout            Duration          `yaml:"timeout,omitempty" json:"timeout,omitempty" doc:"Request timeout (default: twice maxLatency when maxLatency is set, else the smaller of the interval and 5s). A request still unanswered after maxLatency counts as a latency breach either way."`
	InsecureSkipVerify bool              `yaml:"insecureSkipVerify,omitempty" json:"insecureSkipVerify,omitempty"`
}
