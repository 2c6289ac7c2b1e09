package safety

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/faultline-dev/faultline/runbooks"
)

// NewPrometheusAPI returns a Prometheus API client for the connection settings of p (address,
// headers, credentials, TLS) — the same transport the Prometheus guardrail uses — so that the
// recorders reading Prometheus accept exactly the connection fields the guardrails do. Credential
// files are checked now and re-read on every request.
func NewPrometheusAPI(p *runbooks.PrometheusProbe) (promv1.API, error) {
	addr := strings.TrimSuffix(p.Address, "/")
	rt, err := promRoundTripper(p)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", addr, err)
	}
	client, err := api.NewClient(api.Config{Address: addr, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", addr, err)
	}
	return promv1.NewAPI(client), nil
}
