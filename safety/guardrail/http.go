package guardrail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

type httpProbe struct {
	spec       runbooks.HTTPProbe
	method     string
	ranges     [][2]int
	timeout    time.Duration
	maxLatency time.Duration
	client     *http.Client
}

func newHTTPProbe(spec any, g runbooks.Guardrail, _ ProbeEnv) (Probe, error) {
	s := *spec.(*runbooks.HTTPProbe)
	p := &httpProbe{spec: s, method: strings.ToUpper(s.Method), maxLatency: s.MaxLatency.D()}
	if p.method == "" {
		p.method = http.MethodGet
	}
	statuses := s.ExpectStatus
	if len(statuses) == 0 {
		statuses = []string{"2xx"}
	}
	for _, st := range statuses {
		lo, hi, err := runbooks.ParseStatusRange(st)
		if err != nil {
			return nil, err
		}
		p.ranges = append(p.ranges, [2]int{lo, hi})
	}
	p.timeout = s.Timeout.D()
	if p.timeout == 0 {
		iv := g.Interval.D()
		if iv == 0 {
			iv = DefaultInterval
		}
		p.timeout = min(iv, 5*time.Second)
		// A timeout at or below maxLatency would turn every slow answer into "could not evaluate".
		if p.maxLatency > 0 {
			p.timeout = max(p.timeout, 2*p.maxLatency)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Keep-alive would hide a server that stopped accepting connections; a guardrail must see it.
	tr.DisableKeepAlives = true
	if s.InsecureSkipVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the runbook asked for it
	}
	p.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return p, nil
}

func (p *httpProbe) Describe() string {
	var st []string
	for _, r := range p.ranges {
		if r[0] == r[1] {
			st = append(st, fmt.Sprint(r[0]))
		} else {
			st = append(st, fmt.Sprintf("%d-%d", r[0], r[1]))
		}
	}
	d := fmt.Sprintf("%s %s expects %s", p.method, p.spec.URL, strings.Join(st, ","))
	if p.maxLatency > 0 {
		d += " within " + p.maxLatency.String()
	}
	return d
}

func (p *httpProbe) Check(ctx context.Context) (Observation, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var body io.Reader
	if p.spec.Body != "" {
		body = strings.NewReader(p.spec.Body)
	}
	req, err := http.NewRequestWithContext(ctx, p.method, p.spec.URL, body)
	if err != nil {
		return Observation{}, fmt.Errorf("build request: %w", err)
	}
	for k, v := range p.spec.Headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		// No answer within maxLatency is a latency breach whatever the timeout: the SLO is known
		// to be missed, so this is an observation, not a blind spot.
		if waited := time.Since(start); p.maxLatency > 0 && waited > p.maxLatency && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			secs := waited.Seconds()
			return Observation{Time: start, Value: &secs, Detail: fmt.Sprintf("no response within %s (maxLatency %s)", waited.Round(time.Millisecond), p.maxLatency)}, nil
		}
		return Observation{Time: start}, fmt.Errorf("%s %s: %w", p.method, p.spec.URL, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	lat := time.Since(start)
	secs := lat.Seconds()
	obs := Observation{Time: start, Value: &secs, Pass: true}
	switch {
	case !p.statusOK(resp.StatusCode):
		obs.Pass = false
		obs.Detail = fmt.Sprintf("status %d not expected (latency %s)", resp.StatusCode, lat.Round(time.Microsecond))
	case p.maxLatency > 0 && lat > p.maxLatency:
		obs.Pass = false
		obs.Detail = fmt.Sprintf("latency %s > %s", lat.Round(time.Microsecond), p.maxLatency)
	default:
		obs.Detail = fmt.Sprintf("status %d in %s", resp.StatusCode, lat.Round(time.Microsecond))
	}
	return obs, nil
}

func (p *httpProbe) statusOK(code int) bool {
	for _, r := range p.ranges {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}
