package guardrail

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

// A server slower than maxLatency is a latency breach, not "could not evaluate", with the default
// timeout (the interval, 250ms, is shorter than maxLatency); an explicit shorter timeout is warned of.
func TestHTTPSlowServerIsALatencyBreach(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // the slowness under test: answer only when released or the client gives up
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	for _, timeout := range []string{"", "timeout: 100ms, "} {
		rb, err := runbooks.Parse("t.yaml", []byte(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: t}
environment: {name: test, type: local}
guardrails:
  - {name: api, interval: 250ms, http: {`+timeout+`url: "`+srv.URL+`", maxLatency: 300ms}}
experiments:
  - name: x
    duration: 1s
    faults: [{processPause: {pidFile: /nonexistent}}]
`))
		if err != nil {
			t.Fatal(err)
		}
		gs, err := Compile(rb.Guardrails, DefaultProbes(), ProbeEnv{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		obs := gs[0].Evaluate(ctx)
		cancel()
		if timeout == "" && (obs.Pass || obs.Error != "" || !strings.Contains(obs.Detail, "maxLatency 300ms")) {
			t.Errorf("default timeout: observation %+v, want a latency breach (not pass, no error)", obs)
		}
		if timeout != "" {
			// An explicit timeout below maxLatency is obeyed (blind), and validate warns about it.
			if w := runbooks.Warnings(rb); len(w) != 1 || !strings.Contains(w[0], "guardrails[0].http.timeout: 100ms is below maxLatency 300ms") {
				t.Errorf("warnings = %q, want one about the timeout below maxLatency", w)
			}
		} else if w := runbooks.Warnings(rb); len(w) != 0 {
			t.Errorf("warnings = %q without a timeout, want none", w)
		}
	}
}
