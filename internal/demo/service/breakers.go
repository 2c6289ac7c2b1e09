package service

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// breakerStates are gobreaker's state names, the values of the state label.
var breakerStates = []string{"closed", "half-open", "open"}

// breakerMetrics export breaker state in faultline's gauge convention for Go services, the one the
// breaker recorder's gobreaker preset reads:
//
//	gobreaker_state{name, state="closed|half-open|open"}    1 for the current state, 0 otherwise
//	gobreaker_transitions_total{name, from, to}              one increment per state change
type breakerMetrics struct {
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
}

func newBreakerMetrics(reg prometheus.Registerer) *breakerMetrics {
	m := &breakerMetrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gobreaker_state",
			Help: "Circuit breaker state: 1 for the current state, 0 for the others."}, []string{"name", "state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gobreaker_transitions_total",
			Help: "Circuit breaker state changes."}, []string{"name", "from", "to"}),
	}
	reg.MustRegister(m.state, m.transitions)
	return m
}

// newBreaker opens after failures consecutive failures, stays open for openFor, then lets one
// call through half-open.
func (m *breakerMetrics) newBreaker(name string, failures uint32, openFor time.Duration) *gobreaker.CircuitBreaker[struct{}] {
	// Every series exists from the start, so that the first change is seen as growth from zero
	// rather than as a new series.
	for _, st := range breakerStates {
		m.state.WithLabelValues(name, st).Set(b2f(st == "closed"))
	}
	for _, p := range [][2]string{{"closed", "open"}, {"open", "half-open"}, {"half-open", "closed"}, {"half-open", "open"}} {
		m.transitions.WithLabelValues(name, p[0], p[1])
	}
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		OnStateChange: func(name string, from, to gobreaker.State) {
			m.state.WithLabelValues(name, from.String()).Set(0)
			m.state.WithLabelValues(name, to.String()).Set(1)
			m.transitions.WithLabelValues(name, from.String(), to.String()).Inc()
		},
	})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
