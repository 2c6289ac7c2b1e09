package guardrail_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/prom"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// compileGuardrail loads a runbook holding one guardrail (YAML lines under "- name: g") through
// the real loader and compiles it with the default probes.
func compileGuardrail(t *testing.T, gr string) *guardrail.Guardrail {
	t.Helper()
	g, err := tryCompile(gr)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func tryCompile(gr string) (*guardrail.Guardrail, error) {
	doc := "apiVersion: faultline.dev/v1alpha1\nkind: Runbook\nmetadata: {name: t}\nenvironment: {name: t, type: local}\n" +
		"guardrails:\n  - name: g\n" + gr +
		"experiments:\n  - name: x\n    duration: 1s\n    faults: [{processPause: {exe: sleep}}]\n"
	rb, err := runbooks.Parse("rb.yaml", []byte(doc))
	if err != nil {
		return nil, err
	}
	gs, err := guardrail.Compile(rb.Guardrails, guardrail.DefaultProbes(), guardrail.ProbeEnv{})
	if err != nil {
		return nil, err
	}
	return gs[0], nil
}

func promGuardrail(addr, query, op string, threshold float64, extra string) string {
	return fmt.Sprintf("    %s\n    prometheus:\n      address: %s\n      query: '%s'\n      op: %q\n      threshold: %g\n      timeout: 2s\n", extra, addr, query, op, threshold)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// setAndWait sets test_value{series} and waits until Prometheus has scraped the new value.
func setAndWait(t *testing.T, s *prom.Server, values map[string]float64) {
	t.Helper()
	for k, v := range values {
		s.Target.Value.WithLabelValues(k).Set(v)
	}
	if _, err := s.WaitIngested(ctxFor(t, 20*time.Second), time.Now()); err != nil {
		t.Fatal(err)
	}
}

// mustJSON checks that an observation survives the result document's encoding.
func mustJSON(t *testing.T, o guardrail.Observation) {
	t.Helper()
	if _, err := json.Marshal(o); err != nil {
		t.Fatalf("observation does not encode: %v (%+v)", err, o)
	}
}

// The queries read test values through last_over_time: a scrape that fails on a loaded machine marks
// a series stale at once, and a plain selector would then return nothing for a moment.
func TestPrometheusProbe(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	setAndWait(t, s, map[string]float64{"five": 5, "a": 1, "b": 3, "c": 10})

	t.Run("scalar, every operator", func(t *testing.T) {
		q := `scalar(last_over_time(test_value{series="five"}[10s]))`
		for _, c := range []struct {
			op        string
			threshold float64
			pass      bool
		}{
			{"<", 6, true}, {"<", 5, false},
			{"<=", 5, true}, {"<=", 4.5, false},
			{">", 4, true}, {">", 5, false},
			{">=", 5, true}, {">=", 5.5, false},
			{"==", 5, true}, {"==", 4, false},
			{"!=", 4, true}, {"!=", 5, false},
		} {
			g := compileGuardrail(t, promGuardrail(s.URL, q, c.op, c.threshold, ""))
			o := g.Evaluate(ctxFor(t, 5*time.Second))
			mustJSON(t, o)
			if o.Pass != c.pass || o.Error != "" || o.Value == nil || *o.Value != 5 || len(o.Series) != 0 {
				t.Errorf("5 %s %g: pass=%v value=%v error=%q detail=%q; want pass=%v value 5", c.op, c.threshold, o.Pass, o.Value, o.Error, o.Detail, c.pass)
			}
			if want := fmt.Sprintf("%s %s %g @ %s", q, c.op, c.threshold, s.URL); g.Probe.Describe() != want {
				t.Errorf("Describe() = %q, want %q", g.Probe.Describe(), want)
			}
		}
	})

	t.Run("single-series vector, every operator", func(t *testing.T) {
		for _, c := range []struct {
			op        string
			threshold float64
			pass      bool
		}{{"<", 5, false}, {"<=", 5, true}, {">", 5, false}, {">=", 5, true}, {"==", 5, true}, {"!=", 5, false}} {
			o := compileGuardrail(t, promGuardrail(s.URL, `last_over_time(test_value{series="five"}[10s])`, c.op, c.threshold, "")).Evaluate(ctxFor(t, 5*time.Second))
			if o.Pass != c.pass || len(o.Series) != 1 || o.Series[0].Labels["series"] != "five" || o.Series[0].Pass != c.pass {
				t.Errorf("5 %s %g: pass=%v series=%+v detail=%q; want pass=%v", c.op, c.threshold, o.Pass, o.Series, o.Detail, c.pass)
			}
		}
	})

	t.Run("per series: any series breaching breaches", func(t *testing.T) {
		q := `last_over_time(test_value{series=~"a|b|c"}[10s])`
		o := compileGuardrail(t, promGuardrail(s.URL, q, "<", 5, "")).Evaluate(ctxFor(t, 5*time.Second))
		mustJSON(t, o)
		if o.Pass || o.Value == nil || *o.Value != 10 || len(o.Series) != 3 {
			t.Fatalf("a=1 b=3 c=10 < 5: pass=%v value=%v series=%+v detail=%q; want a breach at 10", o.Pass, o.Value, o.Series, o.Detail)
		}
		if s0 := o.Series[0]; s0.Labels["series"] != "c" || s0.Pass || s0.Labels["job"] != "target" {
			t.Fatalf("first series = %+v, want the breaching one (c) with its labels", s0)
		}
		for _, x := range o.Series[1:] {
			if !x.Pass {
				t.Fatalf("series %+v marked failing", x)
			}
		}
		t.Logf("breach: %s", o.Detail)
		if !strings.Contains(o.Detail, `series="c"`) || !strings.Contains(o.Detail, "1 of 3 series breaching") {
			t.Fatalf("detail %q does not name the breaching series", o.Detail)
		}

		o = compileGuardrail(t, promGuardrail(s.URL, q, ">", 0.5, "")).Evaluate(ctxFor(t, 5*time.Second))
		t.Logf("pass: %s", o.Detail)
		if !o.Pass || o.Value == nil || *o.Value != 1 || len(o.Series) != 3 {
			t.Fatalf("all > 0.5: pass=%v value=%v (want the nearest, 1) detail=%q", o.Pass, o.Value, o.Detail)
		}
		o = compileGuardrail(t, promGuardrail(s.URL, q, ">", 2, "")).Evaluate(ctxFor(t, 5*time.Second))
		if o.Pass || *o.Value != 1 || o.Series[0].Labels["series"] != "a" {
			t.Fatalf("> 2: pass=%v value=%v series=%+v, want a breaching at 1", o.Pass, *o.Value, o.Series)
		}
	})

	t.Run("empty result and NaN follow onEmpty", func(t *testing.T) {
		for _, c := range []struct{ name, query, onEmpty string }{
			{"no series", `test_value{series="nope"}`, ""},
			{"no series", `test_value{series="nope"}`, "fail"},
			{"no series", `test_value{series="nope"}`, "ignore"},
			{"NaN vector", `test_value{series="a"} * 0 / 0`, "fail"},
			{"NaN vector", `test_value{series="a"} * 0 / 0`, "ignore"},
			{"NaN scalar", `scalar(test_value{series="nope"})`, "ignore"},
		} {
			extra := ""
			if c.onEmpty != "" {
				extra = "onEmpty: " + c.onEmpty
			}
			gy := promGuardrail(s.URL, c.query, "<", 1, "")
			gy = strings.Replace(gy, "timeout: 2s", "timeout: 2s\n      "+extra, 1)
			o := compileGuardrail(t, gy).Evaluate(ctxFor(t, 5*time.Second))
			mustJSON(t, o)
			ignore := c.onEmpty == "ignore"
			if o.Pass != ignore || o.Ignored != ignore || o.Error != "" || o.Value != nil {
				t.Errorf("%s, onEmpty %q: pass=%v ignored=%v error=%q value=%v detail=%q", c.name, c.onEmpty, o.Pass, o.Ignored, o.Error, o.Value, o.Detail)
			}
		}
	})

	t.Run("a query the server rejects fails even with onError ignore", func(t *testing.T) {
		for _, onError := range []string{"fail", "ignore"} {
			g := compileGuardrail(t, promGuardrail(s.URL, `sum(rate(test_value[1m])) by`, "<", 1, "onError: "+onError))
			o := g.Evaluate(ctxFor(t, 5*time.Second))
			if o.Pass || o.Ignored || !strings.Contains(o.Error, "invalid query") {
				t.Errorf("onError %s: pass=%v ignored=%v error=%q; want a failing, not ignored, observation", onError, o.Pass, o.Ignored, o.Error)
			}
			// A range vector is not something a guardrail can compare.
			o = compileGuardrail(t, promGuardrail(s.URL, `test_value[1s]`, "<", 1, "onError: "+onError)).Evaluate(ctxFor(t, 5*time.Second))
			if o.Pass || o.Ignored || !strings.Contains(o.Error, "matrix") {
				t.Errorf("range query, onError %s: pass=%v error=%q", onError, o.Pass, o.Error)
			}
		}
	})

	t.Run("slo errorRatio", func(t *testing.T) {
		traffic(t, s, func() {
			s.Target.Requests.WithLabelValues("checkout", "200").Add(99)
			s.Target.Requests.WithLabelValues("checkout", "503").Add(1)
			s.Target.Requests.WithLabelValues("other", "500").Add(50) // another service's errors
		})
		slo := func(max float64) string {
			return fmt.Sprintf("    prometheus:\n      address: %s\n      slo: {errorRatio: {metric: test_requests_total, errorSelector: 'code=~\"5..\"', selector: 'service=\"checkout\"', window: 3s, max: %g}}\n", s.URL, max)
		}
		g := compileGuardrail(t, slo(0.02))
		wantQ := `sum(rate(test_requests_total{service="checkout",code=~"5.."}[3s])) / sum(rate(test_requests_total{service="checkout"}[3s])) < 0.02 @ ` + s.URL
		if g.Probe.Describe() != wantQ {
			t.Fatalf("Describe() = %q\nwant        %q", g.Probe.Describe(), wantQ)
		}
		o := g.Evaluate(ctxFor(t, 5*time.Second))
		if !o.Pass || o.Value == nil || *o.Value < 0.007 || *o.Value > 0.013 {
			t.Fatalf("1%% errors < 2%%: pass=%v value=%v detail=%q error=%q", o.Pass, o.Value, o.Detail, o.Error)
		}
		if o = compileGuardrail(t, slo(0.005)).Evaluate(ctxFor(t, 5*time.Second)); o.Pass {
			t.Fatalf("1%% errors < 0.5%%: passed (value %v, %q)", o.Value, o.Detail)
		}
	})

	t.Run("slo latency", func(t *testing.T) {
		traffic(t, s, func() {
			for range 10 {
				s.Target.Latency.WithLabelValues("/pay").Observe(0.15) // bucket (0.1, 0.2]
				s.Target.Latency.WithLabelValues("/slow").Observe(1.5)
			}
		})
		slo := func(max float64) string {
			return fmt.Sprintf("    prometheus:\n      address: %s\n      slo: {latency: {histogram: test_request_duration_seconds, quantile: 0.99, selector: 'route=\"/pay\"', window: 3s, max: %g}}\n", s.URL, max)
		}
		g := compileGuardrail(t, slo(0.3))
		wantQ := `histogram_quantile(0.99, sum by (le) (rate(test_request_duration_seconds_bucket{route="/pay"}[3s]))) < 0.3 @ ` + s.URL
		if g.Probe.Describe() != wantQ {
			t.Fatalf("Describe() = %q\nwant        %q", g.Probe.Describe(), wantQ)
		}
		o := g.Evaluate(ctxFor(t, 5*time.Second))
		// Linear interpolation inside the (0.1, 0.2] bucket: 0.1 + 0.99*0.1.
		if !o.Pass || o.Value == nil || *o.Value < 0.198 || *o.Value > 0.2 {
			t.Fatalf("p99 0.199 < 0.3: pass=%v value=%v detail=%q error=%q", o.Pass, o.Value, o.Detail, o.Error)
		}
		if o = compileGuardrail(t, slo(0.15)).Evaluate(ctxFor(t, 5*time.Second)); o.Pass {
			t.Fatalf("p99 0.199 < 0.15 passed (%q)", o.Detail)
		}
	})
}

// traffic calls step every 20ms in the background until the test ends (at most 60s), and waits
// until Prometheus has three scrapes of it, enough for rate() over a 3s window.
func traffic(t *testing.T, s *prom.Server, step func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			step()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	start := time.Now()
	if _, err := s.WaitIngested(ctxFor(t, 20*time.Second), start.Add(3*s.ScrapeInterval)); err != nil {
		t.Fatal(err)
	}
}

// Prometheus is SIGKILLed: the probe reports an error; the guardrail fails closed unless the
// runbook said onError: ignore, in which case the observation is recorded as an ignored gap.
func TestPrometheusProbeUnreachableFailsClosed(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	setAndWait(t, s, map[string]float64{"a": 1})
	closed := compileGuardrail(t, promGuardrail(s.URL, `last_over_time(test_value{series="a"}[10s])`, "<", 5, ""))
	open := compileGuardrail(t, promGuardrail(s.URL, `last_over_time(test_value{series="a"}[10s])`, "<", 5, "onError: ignore"))
	if o := closed.Evaluate(ctxFor(t, 5*time.Second)); !o.Pass {
		t.Fatalf("healthy before the kill: %+v", o)
	}
	s.Kill()
	o := closed.Evaluate(ctxFor(t, 5*time.Second))
	if o.Pass || o.Error == "" || o.Ignored || !strings.Contains(o.Detail, "could not evaluate") {
		t.Fatalf("fail closed: pass=%v error=%q ignored=%v detail=%q", o.Pass, o.Error, o.Ignored, o.Detail)
	}
	if o.Duration > time.Second {
		t.Fatalf("a refused connection took %s to notice", o.Duration)
	}
	o = open.Evaluate(ctxFor(t, 5*time.Second))
	if !o.Pass || o.Error == "" || !o.Ignored {
		t.Fatalf("onError ignore: pass=%v error=%q ignored=%v", o.Pass, o.Error, o.Ignored)
	}
}

// A server that accepts the connection and never answers is cut off at the per-query timeout.
func TestPrometheusProbeTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn // accept, read nothing, answer nothing
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	g := compileGuardrail(t, strings.Replace(promGuardrail("http://"+ln.Addr().String(), "up", "==", 1, ""), "timeout: 2s", "timeout: 300ms", 1))
	o := g.Evaluate(ctxFor(t, 10*time.Second))
	if o.Pass || o.Error == "" || o.Duration < 300*time.Millisecond || o.Duration > 2*time.Second {
		t.Fatalf("hung server: pass=%v error=%q after %s; want a failure after about 300ms", o.Pass, o.Error, o.Duration)
	}
}

// TLS with the server's CA and basic auth straight to Prometheus (its own --web.config.file).
func TestPrometheusProbeTLSBasicAuth(t *testing.T) {
	t.Parallel()
	s := prom.Start(t, prom.WithTLS(), prom.WithBasicAuth())
	setAndWait(t, s, map[string]float64{"a": 1})
	conn := fmt.Sprintf("      tls: {caFile: %s}\n      basicAuth: {username: %s, passwordFile: %s}\n", s.CA.File, prom.Username, s.PasswordFile)
	o := compileGuardrail(t, promGuardrail(s.URL, `last_over_time(test_value{series="a"}[10s])`, "<", 5, "")+conn).Evaluate(ctxFor(t, 5*time.Second))
	if !o.Pass || o.Error != "" {
		t.Fatalf("TLS + basic auth: %+v", o)
	}
	// Wrong password: the server refuses, which is an error (fail closed), not a pass.
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o = compileGuardrail(t, promGuardrail(s.URL, `last_over_time(test_value{series="a"}[10s])`, "<", 5, "")+strings.Replace(conn, s.PasswordFile, bad, 1)).Evaluate(ctxFor(t, 5*time.Second))
	if o.Pass || !strings.Contains(o.Error, "401") {
		t.Fatalf("wrong password: pass=%v error=%q", o.Pass, o.Error)
	}
	// Without the CA the certificate is not trusted.
	o = compileGuardrail(t, promGuardrail(s.URL, `last_over_time(test_value{series="a"}[10s])`, "<", 5, "")+fmt.Sprintf("      basicAuth: {username: %s, passwordFile: %s}\n", prom.Username, s.PasswordFile)).Evaluate(ctxFor(t, 5*time.Second))
	if o.Pass || !strings.Contains(o.Error, "certificate") {
		t.Fatalf("unknown CA: pass=%v error=%q", o.Pass, o.Error)
	}
}

// Bearer token and tenant header through a real TLS reverse proxy, as in front of Mimir or Thanos.
func TestPrometheusProbeBearerTokenThroughProxy(t *testing.T) {
	t.Parallel()
	s := prom.Start(t)
	setAndWait(t, s, map[string]float64{"a": 1})
	p := prom.StartProxy(t, s, "t0ken", map[string]string{"X-Scope-OrgID": "team-a"})
	conn := func(tokenFile, org string) string {
		return fmt.Sprintf("      tls: {caFile: %s}\n      bearerTokenFile: %s\n      headers: {X-Scope-OrgID: %s}\n", p.CA.File, tokenFile, org)
	}
	o := compileGuardrail(t, promGuardrail(p.URL, `last_over_time(test_value{series="a"}[10s])`, "<", 5, "")+conn(p.TokenFile, "team-a")).Evaluate(ctxFor(t, 5*time.Second))
	if !o.Pass || o.Error != "" || p.Accepted.Load() == 0 {
		t.Fatalf("through the proxy: %+v (accepted %d)", o, p.Accepted.Load())
	}
	o = compileGuardrail(t, promGuardrail(p.URL, `last_over_time(test_value{series="a"}[10s])`, "<", 5, "")+conn(p.TokenFile, "team-b")).Evaluate(ctxFor(t, 5*time.Second))
	if o.Pass || o.Error == "" {
		t.Fatalf("wrong tenant: %+v", o)
	}
	// The token file is read on every query: rotating it takes effect without a restart.
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := compileGuardrail(t, promGuardrail(p.URL, `last_over_time(test_value{series="a"}[10s])`, "<", 5, "")+conn(tok, "team-a"))
	if o := g.Evaluate(ctxFor(t, 5*time.Second)); o.Pass || !strings.Contains(o.Error, "401") {
		t.Fatalf("old token: pass=%v error=%q", o.Pass, o.Error)
	}
	if err := os.WriteFile(tok, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o := g.Evaluate(ctxFor(t, 5*time.Second)); !o.Pass {
		t.Fatalf("rotated token: %+v", o)
	}
	// A token file that does not exist refuses the guardrail when it is compiled.
	if _, err := tryCompile(promGuardrail(p.URL, "up", "==", 1, "") + conn("/nonexistent/token", "a")); err == nil || !strings.Contains(err.Error(), "bearerTokenFile") {
		t.Fatalf("missing token file: %v", err)
	}
}

func TestSLOQuery(t *testing.T) {
	for _, c := range []struct {
		slo  runbooks.SLO
		want string
	}{
		{runbooks.SLO{ErrorRatio: &runbooks.ErrorRatioSLO{Metric: "http_requests_total", ErrorSelector: `code=~"5.."`, Selector: `job="checkout"`, Window: runbooks.Duration(time.Minute), Max: 0.01}},
			`sum(rate(http_requests_total{job="checkout",code=~"5.."}[1m])) / sum(rate(http_requests_total{job="checkout"}[1m]))`},
		{runbooks.SLO{ErrorRatio: &runbooks.ErrorRatioSLO{Metric: "http_requests_total", ErrorSelector: `code=~'5..', method!="OPTIONS"`, Window: runbooks.Duration(90 * time.Second), Max: 0.01}},
			`sum(rate(http_requests_total{code=~"5..",method!="OPTIONS"}[1m30s])) / sum(rate(http_requests_total[1m30s]))`},
		{runbooks.SLO{Latency: &runbooks.LatencySLO{Histogram: "http_request_duration_seconds", Quantile: 0.99, Selector: `job="checkout"`, Window: runbooks.Duration(time.Minute), Max: 0.3}},
			`histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="checkout"}[1m])))`},
		{runbooks.SLO{Latency: &runbooks.LatencySLO{Histogram: "rpc_seconds", Quantile: 0.5, Window: runbooks.Duration(500 * time.Millisecond), Max: 1}},
			`histogram_quantile(0.5, sum by (le) (rate(rpc_seconds_bucket[500ms])))`},
	} {
		q, _, err := guardrail.SLOQuery(&c.slo)
		if err != nil || q != c.want {
			t.Errorf("SLOQuery = %q, %v\nwant           %q", q, err, c.want)
		}
	}
}
