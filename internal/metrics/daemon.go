package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Daemon holds the metrics only `faultline daemon` has. Nil-safe like Metrics.
type Daemon struct {
	leader    prometheus.Gauge
	nextStart *prometheus.GaugeVec
	runs      *prometheus.CounterVec
	// regressions: see baseline.go.
	regressions *prometheus.GaugeVec
	// recoveryPending is 1 while orphaned faults could not be reverted (nothing is scheduled).
	recoveryPending  prometheus.Gauge
	recoveryFailures prometheus.Counter
}

// NewDaemon registers the daemon's collectors on reg.
func NewDaemon(reg prometheus.Registerer) *Daemon {
	d := &Daemon{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "faultline_leader", Help: "1 when this replica holds the lease and schedules, else 0.",
		}),
		nextStart: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_schedule_next_start_timestamp_seconds", Help: "Unix time of each schedule's next start.",
		}, []string{"schedule"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_runs_total", Help: "Runs finished, by schedule and verdict.",
		}, []string{"schedule", "verdict"}),
	}
	d.recoveryPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "faultline_recovery_pending", Help: "1 while orphaned faults could not be reverted yet; nothing is scheduled meanwhile.",
	})
	d.recoveryFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "faultline_recovery_failures_total", Help: "Failed attempts to revert orphaned faults (retried with backoff).",
	})
	d.regressions = newRegressions()
	reg.MustRegister(d.leader, d.nextStart, d.runs, d.regressions, d.recoveryPending, d.recoveryFailures)
	return d
}

// SetLeader records whether this replica leads.
func (d *Daemon) SetLeader(on bool) {
	if d == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	d.leader.Set(v)
}

// NextStart records a schedule's next start.
func (d *Daemon) NextStart(schedule string, at time.Time) {
	if d != nil {
		d.nextStart.WithLabelValues(schedule).Set(float64(at.UnixNano()) / 1e9)
	}
}

// Run counts a finished run.
func (d *Daemon) Run(schedule, verdict string) {
	if d != nil {
		d.runs.WithLabelValues(schedule, verdict).Inc()
	}
}

// RecoveryPending records whether orphan recovery is still failing.
func (d *Daemon) RecoveryPending(on bool) {
	if d == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	d.recoveryPending.Set(v)
}

// RecoveryFailed counts a failed recovery attempt.
func (d *Daemon) RecoveryFailed() {
	if d != nil {
		d.recoveryFailures.Inc()
	}
}
