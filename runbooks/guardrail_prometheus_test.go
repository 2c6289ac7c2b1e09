package runbooks

import (
	"strings"
	"testing"
)

func promRunbook(guardrail string) string {
	return `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: prom}
environment: {name: test, type: local}
guardrails:
  - name: g
` + guardrail + `experiments:
  - name: x
    duration: 1s
    faults: [{processPause: {exe: sleep}}]
`
}

func TestPrometheusProbeValid(t *testing.T) {
	for name, g := range map[string]string{
		"query": `    prometheus:
      address: http://127.0.0.1:9090
      query: max(rate(errors_total{job="a"}[1m]))
      op: "<"
      threshold: 0.01
`,
		"zero threshold, every op": `    prometheus: {address: "https://mimir/prometheus", query: "up", op: "!=", threshold: 0, onEmpty: ignore, timeout: 2s,
      headers: {X-Scope-OrgID: team-a}, bearerTokenFile: /run/token, tls: {caFile: /ca.pem}}
`,
		"errorRatio": `    prometheus:
      address: http://p:9090
      slo: {errorRatio: {metric: http_requests_total, errorSelector: 'code=~"5.."', selector: 'job="checkout", route!~"/health.*"', window: 1m, max: 0.01}}
`,
		"latency": "    prometheus:\n      address: http://p:9090\n      basicAuth: {username: u, passwordFile: /pw}\n      slo: {latency: {histogram: http_request_duration_seconds, quantile: 0.99, selector: \"job=`checkout`\", window: 90s, max: 0.3}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse("rb.yaml", []byte(promRunbook(g))); err != nil {
				t.Fatalf("valid runbook refused: %v", err)
			}
		})
	}
}

func TestPrometheusProbeInvalid(t *testing.T) {
	cases := []struct{ name, guardrail, want string }{
		{"no address", "    prometheus: {query: up, op: '<', threshold: 1}\n", "rb.yaml:7:5: guardrails[0].prometheus.address: is required"},
		{"credentials in address", "    prometheus: {address: 'http://u:p@h:9090', query: up, op: '<', threshold: 1}\n", "must not hold credentials"},
		{"unquoted >", "    prometheus:\n      address: http://h:9090\n      query: up\n      op: >\n      threshold: 1\n", `guardrails[0].prometheus.op: must be one of < <= > >= == !=, got "" (quote it in YAML`},
		{"bad op", "    prometheus: {address: http://h:9090, query: up, op: '=>', threshold: 1}\n", `got "=>"`},
		{"no threshold", "    prometheus: {address: http://h:9090, query: up, op: '<'}\n", "prometheus.threshold: is required"},
		{"unbalanced", "    prometheus: {address: http://h:9090, query: 'sum(rate(x[1m])', op: '<', threshold: 1}\n", "unclosed '('"},
		{"unterminated string", "    prometheus: {address: http://h:9090, query: 'x{a=\"b}', op: '<', threshold: 1}\n", "unterminated string"},
		{"query and slo", "    prometheus: {address: http://h:9090, query: up, slo: {latency: {histogram: h, quantile: 0.9, window: 1m, max: 1}}}\n", "slo and query/op/threshold are exclusive"},
		{"empty slo", "    prometheus: {address: http://h:9090, slo: {}}\n", "prometheus.slo: a service-level objective must set exactly one of: errorRatio, latency"},
		{"bad matcher", "    prometheus: {address: http://h:9090, slo: {errorRatio: {metric: m, errorSelector: 'code=5xx', window: 1m, max: 0.01}}}\n", "errorSelector: \"code=5xx\": value of code: expected a quoted string"},
		{"bad regexp", "    prometheus: {address: http://h:9090, slo: {errorRatio: {metric: m, errorSelector: 'code=~\"5(\"', window: 1m, max: 0.01}}}\n", "regular expression of code"},
		{"braces", "    prometheus: {address: http://h:9090, slo: {errorRatio: {metric: m, errorSelector: '{code=\"500\"}', window: 1m, max: 0.01}}}\n", "without braces"},
		{"ratio above 1", "    prometheus: {address: http://h:9090, slo: {errorRatio: {metric: m, errorSelector: 'c=\"5\"', window: 1m, max: 5}}}\n", "errorRatio.max: must be a ratio above 0 and at most 1"},
		{"no window", "    prometheus: {address: http://h:9090, slo: {errorRatio: {metric: m, errorSelector: 'c=\"5\"', max: 0.1}}}\n", "errorRatio.window: is required"},
		{"bucket suffix", "    prometheus: {address: http://h:9090, slo: {latency: {histogram: h_bucket, quantile: 0.9, window: 1m, max: 1}}}\n", "without the _bucket suffix"},
		{"quantile", "    prometheus: {address: http://h:9090, slo: {latency: {histogram: h, quantile: 99, window: 1m, max: 1}}}\n", "latency.quantile: must be between 0 and 1"},
		{"le", "    prometheus: {address: http://h:9090, slo: {latency: {histogram: h, quantile: 0.9, selector: 'le=\"1\"', window: 1m, max: 1}}}\n", "must not match on le"},
		{"auth header", "    prometheus: {address: http://h:9090, query: up, op: '<', threshold: 1, headers: {authorization: x}}\n", "set credentials with bearerTokenFile or basicAuth"},
		{"two auths", "    prometheus: {address: http://h:9090, query: up, op: '<', threshold: 1, bearerTokenFile: /t, basicAuth: {username: u, passwordFile: /p}}\n", "bearerTokenFile and basicAuth are exclusive"},
		{"tls on http", "    prometheus: {address: http://h:9090, query: up, op: '<', threshold: 1, tls: {caFile: /ca}}\n", "use https://"},
		{"onEmpty", "    prometheus: {address: http://h:9090, query: up, op: '<', threshold: 1, onEmpty: pass}\n", "onEmpty: must be fail or ignore"},
		{"typo", "    prometheus: {address: http://h:9090, query: up, op: '<', treshold: 1}\n", `unknown field "treshold" (did you mean "threshold"?)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("rb.yaml", []byte(promRunbook(c.guardrail)))
			if err == nil {
				t.Fatal("invalid runbook accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not say %q:\n%v", c.want, err)
			}
		})
	}
}

func TestParseMatchers(t *testing.T) {
	ms, err := ParseMatchers(` job="checkout", code=~'5..' ,route!~` + "`/health.*`" + `, a!="x\"y",`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.String())
	}
	want := `job="checkout" code=~"5.." route!~"/health.*" a!="x\"y"`
	if strings.Join(got, " ") != want {
		t.Fatalf("got %s, want %s", strings.Join(got, " "), want)
	}
	if ms, err := ParseMatchers("  "); err != nil || len(ms) != 0 {
		t.Fatalf("empty selector: %v, %v", ms, err)
	}
}
