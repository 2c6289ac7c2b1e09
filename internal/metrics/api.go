package metrics

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// API holds the daemon's HTTP API metrics. Nil-safe like Metrics.
type API struct {
	requests *prometheus.CounterVec
}

// NewAPI registers the API's collectors on reg. Registering twice on one registry (a server
// rebuilt in the same process) reuses the collector already there.
func NewAPI(reg prometheus.Registerer) (*API, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "faultline_api_requests_total",
		Help: "Requests to the daemon's HTTP API, by route pattern and status code.",
	}, []string{"route", "code"})
	if err := reg.Register(requests); err != nil {
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		if !ok {
			return nil, fmt.Errorf("register API metrics: %w", err)
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, fmt.Errorf("register API metrics: %w", err)
		}
		requests = existing
	}
	return &API{requests: requests}, nil
}

// Request counts one request; route is the matched pattern ("GET /api/v1/runs/{id}") or
// "unmatched", so that the label stays bounded.
func (a *API) Request(route string, code int) {
	if a != nil {
		a.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	}
}
