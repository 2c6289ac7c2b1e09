package runbooks

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// PrometheusProbe evaluates a PromQL instant query on Prometheus or a server with the same HTTP
// API (Thanos, Mimir, Cortex, VictoriaMetrics). The runbook states the condition that must HOLD:
// `query: X, op: "<", threshold: 0.01` is healthy while X < 0.01. A query returning several series
// is healthy only while every series holds. Either query+op+threshold or slo is set.
type PrometheusProbe struct {
	Address   string   `yaml:"address" json:"address" doc:"Base URL of the Prometheus HTTP API, e.g. http://prometheus:9090 (Mimir: https://mimir/prometheus). No credentials in the URL: use bearerTokenFile or basicAuth."`
	Query     string   `yaml:"query,omitempty" json:"query,omitempty" doc:"PromQL instant query. Returns a scalar or an instant vector; every series must satisfy op threshold."`
	Op        string   `yaml:"op,omitempty" json:"op,omitempty" enum:"<,<=,>,>=,==,!=" doc:"The comparison that must hold for the guardrail to pass: value op threshold. Quote it in YAML (op: \"<\")."`
	Threshold *float64 `yaml:"threshold,omitempty" json:"threshold,omitempty" doc:"The number the query's value is compared with."`
	SLO       *SLO     `yaml:"slo,omitempty" json:"slo,omitempty" doc:"Shorthand for a common SLO query (error ratio or latency quantile), instead of query, op and threshold."`
	OnEmpty   string   `yaml:"onEmpty,omitempty" json:"onEmpty,omitempty" enum:"fail,ignore" doc:"When the query returns no series (or only NaN, e.g. an error ratio with no traffic): fail (default) or ignore (passes, recorded as ignored)."`
	Timeout   Duration `yaml:"timeout,omitempty" json:"timeout,omitempty" doc:"Per-query timeout, sent to the server too (default: the smaller of the interval and 5s)."`

	Headers         map[string]string    `yaml:"headers,omitempty" json:"headers,omitempty" doc:"Extra request headers, e.g. X-Scope-OrgID for Mimir, Cortex or Loki tenants."`
	BearerTokenFile string               `yaml:"bearerTokenFile,omitempty" json:"bearerTokenFile,omitempty" doc:"File holding a bearer token, read on every query (so a rotated token is picked up)."`
	BasicAuth       *PrometheusBasicAuth `yaml:"basicAuth,omitempty" json:"basicAuth,omitempty" doc:"HTTP basic authentication; exclusive with bearerTokenFile."`
	TLS             *PrometheusTLS       `yaml:"tls,omitempty" json:"tls,omitempty" doc:"TLS settings for an https:// address."`
}

// PrometheusBasicAuth is HTTP basic authentication with the password kept in a file.
type PrometheusBasicAuth struct {
	Username     string `yaml:"username" json:"username"`
	PasswordFile string `yaml:"passwordFile" json:"passwordFile" doc:"File holding the password, read on every query."`
}

// PrometheusTLS configures the TLS client used for an https:// address.
type PrometheusTLS struct {
	CAFile             string `yaml:"caFile,omitempty" json:"caFile,omitempty" doc:"PEM CA bundle used to verify the server (default: the system roots)."`
	CertFile           string `yaml:"certFile,omitempty" json:"certFile,omitempty" doc:"PEM client certificate, for servers that require mutual TLS; needs keyFile."`
	KeyFile            string `yaml:"keyFile,omitempty" json:"keyFile,omitempty" doc:"PEM private key of certFile."`
	ServerName         string `yaml:"serverName,omitempty" json:"serverName,omitempty" doc:"Name to verify the server certificate against (default: the address's host)."`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify,omitempty" json:"insecureSkipVerify,omitempty" doc:"Do not verify the server certificate. For throwaway test setups only."`
}

// SLO is the shorthand for a common service-level objective; exactly one kind is set. It expands to
// a PromQL query compared with `<` max (the expansion is documented in docs/guardrails.md).
type SLO struct {
	ErrorRatio *ErrorRatioSLO `yaml:"errorRatio,omitempty" json:"errorRatio,omitempty" slo:"errorRatio"`
	Latency    *LatencySLO    `yaml:"latency,omitempty" json:"latency,omitempty" slo:"latency"`
}

// ErrorRatioSLO is the share of requests that are errors, from one request counter:
// sum(rate(metric{selector,errorSelector}[window])) / sum(rate(metric{selector}[window])) < max.
type ErrorRatioSLO struct {
	Metric        string   `yaml:"metric" json:"metric" doc:"Request counter, e.g. http_requests_total."`
	ErrorSelector string   `yaml:"errorSelector" json:"errorSelector" doc:"Label matchers that pick the errors among the requests, e.g. code=~\"5..\"."`
	Selector      string   `yaml:"selector,omitempty" json:"selector,omitempty" doc:"Label matchers for the service's requests, e.g. job=\"checkout\". Empty means all series of metric."`
	Window        Duration `yaml:"window" json:"window" doc:"rate() window, e.g. 1m. At least a few scrape intervals."`
	Max           float64  `yaml:"max" json:"max" doc:"Healthy while the ratio is below this, e.g. 0.01 (1%). Between 0 and 1."`
}

// LatencySLO is a latency quantile from a classic Prometheus histogram:
// histogram_quantile(quantile, sum by (le) (rate(histogram_bucket{selector}[window]))) < max.
type LatencySLO struct {
	Histogram string   `yaml:"histogram" json:"histogram" doc:"Histogram name without the _bucket suffix, e.g. http_request_duration_seconds."`
	Quantile  float64  `yaml:"quantile" json:"quantile" doc:"Quantile between 0 and 1, e.g. 0.99."`
	Selector  string   `yaml:"selector,omitempty" json:"selector,omitempty" doc:"Label matchers, e.g. job=\"checkout\",route=\"/pay\"."`
	Window    Duration `yaml:"window" json:"window" doc:"rate() window, e.g. 1m."`
	Max       float64  `yaml:"max" json:"max" doc:"Healthy while the quantile is below this, in the histogram's unit (seconds for *_seconds), e.g. 0.3."`
}

// Kind names the SLO kind that is set: errorRatio, latency or "".
func (s *SLO) Kind() string {
	m := setMembers(s, "slo")
	if len(m) == 0 {
		return ""
	}
	return m[0].tag
}

// promOps are the comparisons a Prometheus guardrail may state.
var promOps = []string{"<", "<=", ">", ">=", "==", "!="}

var metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

func (p *PrometheusProbe) validate(v *Validator, path string) {
	p.validateConnection(v, path)
	switch {
	case p.SLO != nil && (p.Query != "" || p.Op != "" || p.Threshold != nil):
		v.Errorf(path, "slo and query/op/threshold are exclusive: choose one")
	case p.SLO != nil:
		validateUnion(v, path+".slo", p.SLO, "slo", "service-level objective")
	default:
		if p.Query == "" {
			v.Errorf(path+".query", "is required (or use slo), e.g. max(rate(http_errors_total[1m]))")
		} else if err := CheckPromQL(p.Query); err != nil {
			v.Errorf(path+".query", "%v", err)
		}
		if !validOp(p.Op) {
			v.Errorf(path+".op", "must be one of %s, got %q (quote it in YAML: op: \"<\")", strings.Join(promOps, " "), p.Op)
		}
		if p.Threshold == nil {
			v.Errorf(path+".threshold", "is required: the number the query's value is compared with")
		}
	}
	switch p.OnEmpty {
	case "", "fail", "ignore":
	default:
		v.Errorf(path+".onEmpty", "must be fail or ignore, got %q", p.OnEmpty)
	}
}

// validateConnection checks the fields every Prometheus client shares (address, credentials,
// TLS, headers), so that the breaker recorder validates them the same way; it returns the parsed
// address (nil when it does not parse).
func (p *PrometheusProbe) validateConnection(v *Validator, path string) *url.URL {
	u, err := url.Parse(p.Address)
	switch {
	case p.Address == "":
		v.Errorf(path+".address", "is required, e.g. http://prometheus:9090")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.Errorf(path+".address", "%q is not an absolute http:// or https:// URL", p.Address)
	case u.User != nil:
		v.Errorf(path+".address", "must not hold credentials: use basicAuth or bearerTokenFile")
	case u.RawQuery != "" || u.Fragment != "":
		v.Errorf(path+".address", "must not have a query or fragment: give the base URL of the API")
	}

	for k := range p.Headers {
		switch {
		case !validHeaderName(k):
			v.Errorf(path+".headers."+k, "%q is not a valid HTTP header name", k)
		case http.CanonicalHeaderKey(k) == "Authorization":
			v.Errorf(path+".headers."+k, "set credentials with bearerTokenFile or basicAuth, not a header")
		}
	}
	if p.BearerTokenFile != "" && p.BasicAuth != nil {
		v.Errorf(path, "bearerTokenFile and basicAuth are exclusive: choose one")
	}
	if b := p.BasicAuth; b != nil {
		if b.Username == "" {
			v.Errorf(path+".basicAuth.username", "is required")
		}
		if b.PasswordFile == "" {
			v.Errorf(path+".basicAuth.passwordFile", "is required: a file holding the password")
		}
	}
	if t := p.TLS; t != nil {
		if (t.CertFile == "") != (t.KeyFile == "") {
			v.Errorf(path+".tls", "certFile and keyFile go together: set both or neither")
		}
		if u != nil && u.Scheme == "http" {
			v.Errorf(path+".tls", "is set but address %q is http://; use https://", p.Address)
		}
	}
	return u
}

func validOp(op string) bool {
	for _, o := range promOps {
		if op == o {
			return true
		}
	}
	return false
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

func (s *ErrorRatioSLO) validate(v *Validator, path string) {
	if !metricNameRE.MatchString(s.Metric) {
		v.Errorf(path+".metric", "%q is not a metric name, e.g. http_requests_total", s.Metric)
	}
	if strings.TrimSpace(s.ErrorSelector) == "" {
		v.Errorf(path+".errorSelector", "is required: label matchers that pick the errors, e.g. code=~\"5..\"")
	} else if _, err := ParseMatchers(s.ErrorSelector); err != nil {
		v.Errorf(path+".errorSelector", "%v", err)
	}
	if _, err := ParseMatchers(s.Selector); err != nil {
		v.Errorf(path+".selector", "%v", err)
	}
	validateWindow(v, path+".window", s.Window)
	if !(s.Max > 0 && s.Max <= 1) {
		v.Errorf(path+".max", "must be a ratio above 0 and at most 1, e.g. 0.01 for 1%%, got %g", s.Max)
	}
}

func (s *LatencySLO) validate(v *Validator, path string) {
	switch {
	case !metricNameRE.MatchString(s.Histogram):
		v.Errorf(path+".histogram", "%q is not a metric name, e.g. http_request_duration_seconds", s.Histogram)
	case strings.HasSuffix(s.Histogram, "_bucket"):
		v.Errorf(path+".histogram", "name the histogram without the _bucket suffix: %q", strings.TrimSuffix(s.Histogram, "_bucket"))
	}
	if !(s.Quantile > 0 && s.Quantile < 1) {
		v.Errorf(path+".quantile", "must be between 0 and 1 (exclusive), e.g. 0.99, got %g", s.Quantile)
	}
	ms, err := ParseMatchers(s.Selector)
	if err != nil {
		v.Errorf(path+".selector", "%v", err)
	}
	for _, m := range ms {
		if m.Name == "le" {
			v.Errorf(path+".selector", "must not match on le: the quantile is computed across the buckets")
		}
	}
	validateWindow(v, path+".window", s.Window)
	if !(s.Max > 0) {
		v.Errorf(path+".max", "must be positive, in the histogram's unit (e.g. 0.3 for 300ms in a _seconds histogram), got %g", s.Max)
	}
}

func validateWindow(v *Validator, path string, w Duration) {
	switch {
	case w <= 0:
		v.Errorf(path, "is required: the rate() window, e.g. 1m")
	case w.D()%time.Millisecond != 0:
		v.Errorf(path, "%s: PromQL windows are whole milliseconds", w)
	}
}

// Matcher is one PromQL label matcher, e.g. code=~"5..".
type Matcher struct {
	Name  string
	Op    string // =, !=, =~, !~
	Value string // unquoted
}

// String renders the matcher as PromQL, with the value double-quoted.
func (m Matcher) String() string { return m.Name + m.Op + strconv.Quote(m.Value) }

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*`)

// ParseMatchers reads a comma-separated list of PromQL label matchers as written between braces,
// e.g. `job="checkout", code=~"5.."`. Values are quoted with ", ' or `; regular expressions are
// checked with the same (RE2) syntax Prometheus uses. An empty string is an empty list.
func ParseMatchers(s string) ([]Matcher, error) {
	var out []Matcher
	rest := strings.TrimSpace(s)
	if strings.HasPrefix(rest, "{") {
		return nil, fmt.Errorf("%q: write the matchers without braces, e.g. job=\"checkout\"", s)
	}
	for rest != "" {
		name := labelNameRE.FindString(rest)
		if name == "" {
			return nil, fmt.Errorf("%q: expected a label name at %q", s, rest)
		}
		rest = strings.TrimSpace(rest[len(name):])
		var op string
		for _, o := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(rest, o) {
				op = o
				break
			}
		}
		if op == "" {
			return nil, fmt.Errorf("%q: expected =, !=, =~ or !~ after %s", s, name)
		}
		rest = strings.TrimSpace(rest[len(op):])
		val, n, err := unquotePromString(rest)
		if err != nil {
			return nil, fmt.Errorf("%q: value of %s: %w", s, name, err)
		}
		if op == "=~" || op == "!~" {
			if _, err := regexp.Compile("^(?:" + val + ")$"); err != nil {
				return nil, fmt.Errorf("%q: regular expression of %s: %w", s, name, err)
			}
		}
		out = append(out, Matcher{Name: name, Op: op, Value: val})
		rest = strings.TrimSpace(rest[n:])
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("%q: expected a comma at %q", s, rest)
		}
		rest = strings.TrimSpace(rest[1:])
	}
	return out, nil
}

// unquotePromString reads one PromQL string literal at the start of s and returns its value and
// the length of the literal.
func unquotePromString(s string) (string, int, error) {
	if s == "" || !strings.ContainsRune("\"'`", rune(s[0])) {
		return "", 0, fmt.Errorf("expected a quoted string")
	}
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q != '`':
			i++
		case s[i] == q:
			lit := s[:i+1]
			if q == '\'' {
				// PromQL single-quoted strings use the double-quoted escapes.
				inner := strings.ReplaceAll(strings.ReplaceAll(lit[1:i], `\'`, `'`), `"`, `\"`)
				lit = `"` + inner + `"`
			}
			v, err := strconv.Unquote(lit)
			if err != nil {
				return "", 0, fmt.Errorf("bad escape in %s", s[:i+1])
			}
			return v, i + 1, nil
		}
	}
	return "", 0, fmt.Errorf("unterminated string %s", s)
}

// CheckPromQL catches the mistakes that can be found without the server: an empty query,
// unbalanced brackets and unterminated strings. The server parses the rest; a query it rejects
// fails the guardrail on every evaluation (it is never ignored).
func CheckPromQL(q string) error {
	if strings.TrimSpace(q) == "" {
		return fmt.Errorf("is empty")
	}
	var stack []byte
	closer := map[byte]byte{')': '(', ']': '[', '}': '{'}
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch c {
		case '"', '\'', '`':
			_, n, err := unquotePromString(q[i:])
			if err != nil {
				return fmt.Errorf("%w (at offset %d)", err, i)
			}
			i += n - 1
		case '#':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case '(', '[', '{':
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != closer[c] {
				return fmt.Errorf("unbalanced %q at offset %d", c, i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return nil
}
