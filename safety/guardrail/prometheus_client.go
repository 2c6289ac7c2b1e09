package guardrail

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/faultline-dev/faultline/runbooks"
)

// NewPrometheusAPI builds a client of the Prometheus HTTP API from the connection fields of conn
// (address, credentials, TLS, headers; the query fields are ignored): the same transport a
// prometheus guardrail uses, for the recorders that read Prometheus too. Instant, range and
// raw-sample (range selector) queries all go through it.
func NewPrometheusAPI(conn *runbooks.PrometheusProbe) (promv1.API, error) {
	address := strings.TrimSuffix(conn.Address, "/")
	rt, err := promRoundTripper(conn)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", address, err)
	}
	client, err := api.NewClient(api.Config{Address: address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", address, err)
	}
	return promv1.NewAPI(client), nil
}
