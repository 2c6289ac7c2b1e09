package agent

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's own; a nil registerer gives working collectors registered nowhere.
type metrics struct {
	held     prometheus.Gauge
	expiries prometheus.Counter
	reverts  *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "faultline_agent_faults_held",
			Help: "Faults the agent holds applied right now.",
		}),
		expiries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "faultline_agent_lease_expiries_total",
			Help: "Faults reverted because their run did not renew the lease in time (the dead-man switch).",
		}),
		reverts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_agent_reverts_total",
			Help: "Faults reverted, by reason: requested, lease expired, pod gone, agent restarted.",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_agent_errors_total",
			Help: "Failed operations, by operation: resolve, apply, revert, ledger.",
		}, []string{"op"}),
	}
	// Every series exists from the start, at 0, so that rate() and alerts see the first one.
	for _, r := range []string{"requested", "lease expired", "pod gone", ReasonAgentRestarted, "apply failed"} {
		m.reverts.WithLabelValues(r)
	}
	for _, op := range []string{"resolve", "apply", "revert", "ledger"} {
		m.errors.WithLabelValues(op)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.held, m.expiries, m.reverts, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return m, nil
}
