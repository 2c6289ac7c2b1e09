package guardrail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/faultline-dev/faultline/runbooks"
)

// MaxSeriesKept bounds the series one observation of a Prometheus guardrail carries in the result
// document: breaching series first, then passing ones. Detail always counts all of them.
const MaxSeriesKept = 20

// compareOp is a parsed comparison; holds reports whether value op threshold is true.
type compareOp struct {
	sym   string
	holds func(v, t float64) bool
	// worse reports whether a is further on the failing side than b (to pick the value reported).
	worse func(a, b float64) bool
}

func parseOp(op string) (compareOp, error) {
	higherWorse := func(a, b float64) bool { return a > b }
	lowerWorse := func(a, b float64) bool { return a < b }
	switch op {
	case "<":
		return compareOp{op, func(v, t float64) bool { return v < t }, higherWorse}, nil
	case "<=":
		return compareOp{op, func(v, t float64) bool { return v <= t }, higherWorse}, nil
	case ">":
		return compareOp{op, func(v, t float64) bool { return v > t }, lowerWorse}, nil
	case ">=":
		return compareOp{op, func(v, t float64) bool { return v >= t }, lowerWorse}, nil
	case "==":
		return compareOp{op, func(v, t float64) bool { return v == t }, nil}, nil
	case "!=":
		return compareOp{op, func(v, t float64) bool { return v != t }, nil}, nil
	}
	return compareOp{}, fmt.Errorf("unknown comparison %q (want < <= > >= == !=)", op)
}

// prometheusProbe is a compiled Prometheus guardrail: the query, comparison and HTTP client are
// built once; Check only sends the query and compares.
type prometheusProbe struct {
	address     string
	query       string
	op          compareOp
	threshold   float64
	ignoreEmpty bool
	timeout     time.Duration
	// serverTimeout is the timeout sent to the server, in a form every Prometheus parses.
	serverTimeout time.Duration
	api           promv1.API
	// errorRatio is the guardrail's errorRatio SLO, for ErrorBudget; nil otherwise.
	errorRatio *runbooks.ErrorRatioSLO
}

func newPrometheusProbe(spec any, g runbooks.Guardrail, _ ProbeEnv) (Probe, error) {
	s := spec.(*runbooks.PrometheusProbe)
	p := &prometheusProbe{address: strings.TrimSuffix(s.Address, "/"), ignoreEmpty: s.OnEmpty == "ignore"}
	var err error
	if s.SLO != nil {
		if p.query, p.threshold, err = SLOQuery(s.SLO); err != nil {
			return nil, err
		}
		p.op, _ = parseOp("<")
		p.errorRatio = s.SLO.ErrorRatio
	} else {
		if s.Threshold == nil {
			return nil, fmt.Errorf("prometheus: threshold is required")
		}
		p.query, p.threshold = s.Query, *s.Threshold
		if p.op, err = parseOp(s.Op); err != nil {
			return nil, fmt.Errorf("prometheus: %w", err)
		}
	}
	p.timeout = s.Timeout.D()
	if p.timeout == 0 {
		iv := g.Interval.D()
		if iv == 0 {
			iv = DefaultInterval
		}
		p.timeout = min(iv, 5*time.Second)
	}
	// Go writes 1.5s, which Prometheus does not parse as a timeout; whole seconds or whole
	// milliseconds it does. The context deadline stays exact.
	p.serverTimeout = p.timeout.Truncate(time.Second)
	if p.serverTimeout == 0 {
		p.serverTimeout = p.timeout.Truncate(time.Millisecond)
	}

	rt, err := promRoundTripper(s)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", p.address, err)
	}
	client, err := api.NewClient(api.Config{Address: p.address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", p.address, err)
	}
	p.api = promv1.NewAPI(client)
	if p.errorRatio != nil {
		return &errorRatioProbe{p}, nil // it can say how much error budget a span burned
	}
	return p, nil
}

// promRoundTripper builds the HTTP transport once. Credential files are checked now (a missing
// one refuses the run) and re-read on every request, so a rotated token or password is picked up;
// the client certificate is re-read on every TLS handshake for the same reason.
func promRoundTripper(s *runbooks.PrometheusProbe) (http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Keep-alive stays on: 20 guardrails every second should not cost 20 handshakes a second, and
	// a dead server is still seen at once (its connections are closed or time out).
	tr.MaxIdleConnsPerHost = 4
	if t := s.TLS; t != nil {
		tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // insecureSkipVerify only when the runbook asks
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, fmt.Errorf("tls.caFile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls.caFile %s: no PEM certificate found", t.CAFile)
			}
			tc.RootCAs = pool
		}
		if t.CertFile != "" {
			if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
				return nil, fmt.Errorf("tls.certFile/keyFile: %w", err)
			}
			certFile, keyFile := t.CertFile, t.KeyFile
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				c, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return nil, fmt.Errorf("load client certificate: %w", err)
				}
				return &c, nil
			}
		}
		tr.TLSClientConfig = tc
	}
	a := &authTransport{next: tr, headers: http.Header{}}
	for k, v := range s.Headers {
		a.headers.Set(k, v)
	}
	if s.BearerTokenFile != "" {
		if _, err := readSecret(s.BearerTokenFile); err != nil {
			return nil, fmt.Errorf("bearerTokenFile: %w", err)
		}
		a.tokenFile = s.BearerTokenFile
	}
	if b := s.BasicAuth; b != nil {
		if _, err := readSecret(b.PasswordFile); err != nil {
			return nil, fmt.Errorf("basicAuth.passwordFile: %w", err)
		}
		a.username, a.passwordFile = b.Username, b.PasswordFile
	}
	return a, nil
}

// authTransport adds the configured headers and credentials to every request.
type authTransport struct {
	next                   http.RoundTripper
	headers                http.Header
	tokenFile              string
	username, passwordFile string
}

func (a *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range a.headers {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "faultline")
	switch {
	case a.tokenFile != "":
		tok, err := readSecret(a.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("bearerTokenFile: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case a.passwordFile != "":
		pw, err := readSecret(a.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("basicAuth.passwordFile: %w", err)
		}
		req.SetBasicAuth(a.username, pw)
	}
	return a.next.RoundTrip(req)
}

// readSecret reads a credentials file, without the trailing newline editors add.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

func (p *prometheusProbe) Describe() string {
	return fmt.Sprintf("%s %s %s @ %s", p.query, p.op.sym, formatFloat(p.threshold), p.address)
}

// Check sends the instant query once and compares every returned series with the threshold. An
// unreachable server, a timeout or an error status is returned as an error (the guardrail's onError
// decides). A query the server rejects as invalid is not an error but a failed observation, so that
// `onError: ignore` never hides a typo for the whole game day.
func (p *prometheusProbe) Check(ctx context.Context) (Observation, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	val, warnings, _, err := p.api.Query(ctx, p.query, time.Time{}, promv1.WithTimeout(p.serverTimeout))
	obs := Observation{Time: start}
	if err != nil {
		var perr *promv1.Error
		if errors.As(err, &perr) && perr.Type == promv1.ErrBadData {
			obs.Error = "invalid query: " + perr.Msg
			obs.Detail = "the server rejected the query (never ignored): " + perr.Msg
			return obs, nil
		}
		return obs, fmt.Errorf("query %s: %w", p.address, err)
	}
	switch v := val.(type) {
	case *model.Scalar:
		p.compareScalar(&obs, float64(v.Value))
	case model.Vector:
		p.compareVector(&obs, v)
	default:
		obs.Error = fmt.Sprintf("query returned a %s; a guardrail needs a scalar or an instant vector", val.Type())
		obs.Detail = obs.Error + " (never ignored)"
		return obs, nil
	}
	if len(warnings) > 0 {
		obs.Detail += " (warnings: " + strings.Join(warnings, "; ") + ")"
	}
	return obs, nil
}

func (p *prometheusProbe) compareScalar(obs *Observation, v float64) {
	if math.IsNaN(v) {
		p.empty(obs, "the query returned NaN (no data)")
		return
	}
	obs.Pass = p.op.holds(v, p.threshold)
	obs.Value = finite(v)
	if obs.Pass {
		obs.Detail = fmt.Sprintf("%s %s %s", formatFloat(v), p.op.sym, formatFloat(p.threshold))
	} else {
		obs.Detail = fmt.Sprintf("%s, want %s %s", formatFloat(v), p.op.sym, formatFloat(p.threshold))
	}
}

func (p *prometheusProbe) empty(obs *Observation, why string) {
	obs.Pass = p.ignoreEmpty
	obs.Ignored = p.ignoreEmpty
	if p.ignoreEmpty {
		obs.Detail = why + "; ignored (onEmpty: ignore)"
	} else {
		obs.Detail = why + "; fails (onEmpty: fail)"
	}
}

type evaluated struct {
	labels model.Metric
	value  float64
	pass   bool
}

func (p *prometheusProbe) compareVector(obs *Observation, vec model.Vector) {
	var all []evaluated
	nan := 0
	for _, s := range vec {
		v := float64(s.Value)
		if math.IsNaN(v) {
			nan++
			continue
		}
		all = append(all, evaluated{labels: s.Metric, value: v, pass: p.op.holds(v, p.threshold)})
	}
	if len(all) == 0 {
		if nan > 0 {
			p.empty(obs, fmt.Sprintf("the query returned %d series, all NaN (no data)", nan))
		} else {
			p.empty(obs, "the query returned no series")
		}
		return
	}
	// Breaching series first, the worst first; then the rest in a stable order.
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].pass != all[j].pass {
			return !all[i].pass
		}
		if p.op.worse != nil && all[i].value != all[j].value {
			return p.op.worse(all[i].value, all[j].value)
		}
		return all[i].labels.String() < all[j].labels.String()
	})
	failing := 0
	for _, e := range all {
		if !e.pass {
			failing++
		}
	}
	for i, e := range all {
		if i == MaxSeriesKept {
			break
		}
		if math.IsInf(e.value, 0) {
			continue // JSON has no infinity; Detail names it
		}
		obs.Series = append(obs.Series, Sample{Labels: labelMap(e.labels), Value: e.value, Pass: e.pass})
	}
	head := all[0] // the worst breaching series, or (all passing) the one nearest the threshold
	if failing == 0 && p.op.worse != nil {
		for _, e := range all[1:] {
			if p.op.worse(e.value, head.value) {
				head = e
			}
		}
	}
	obs.Pass = failing == 0
	obs.Value = finite(head.value)
	series := ""
	if len(all) > 1 || len(head.labels) > 0 {
		series = " for " + head.labels.String()
	}
	switch {
	case obs.Pass && len(all) == 1:
		obs.Detail = fmt.Sprintf("%s %s %s%s", formatFloat(head.value), p.op.sym, formatFloat(p.threshold), series)
	case obs.Pass:
		obs.Detail = fmt.Sprintf("all %d series %s %s (nearest: %s%s)", len(all), p.op.sym, formatFloat(p.threshold), formatFloat(head.value), series)
	default:
		obs.Detail = fmt.Sprintf("%s%s, want %s %s (%d of %d series breaching)", formatFloat(head.value), series, p.op.sym, formatFloat(p.threshold), failing, len(all))
	}
	if nan > 0 {
		obs.Detail += fmt.Sprintf("; %d NaN series skipped", nan)
	}
}

func labelMap(m model.Metric) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[string(k)] = string(v)
	}
	return out
}

// finite returns &v, or nil for ±Inf and NaN, which JSON cannot carry.
func finite(v float64) *float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return nil
	}
	return &v
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
