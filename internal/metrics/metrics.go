// Package metrics holds faultline's own Prometheus metrics. One *Metrics is made per process on
// a registry the command owns; every method is safe on a nil *Metrics so callers need no checks.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the collectors faultline updates.
type Metrics struct {
	Registry          *prometheus.Registry
	experiments       *prometheus.CounterVec
	activeFaults      *prometheus.GaugeVec
	evaluations       *prometheus.CounterVec
	breaches          *prometheus.CounterVec
	evalDuration      *prometheus.HistogramVec
	haltLatency       prometheus.Histogram
	ledgerOutstanding prometheus.Gauge
	faultsApplied     *prometheus.CounterVec
	faultsReverted    *prometheus.CounterVec
	revertFailures    *prometheus.CounterVec
	lastEvaluation    *prometheus.GaugeVec
	failing           *prometheus.GaugeVec
	load              loadCollectors
}

// New registers faultline's collectors (and the Go/process collectors) on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		experiments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_experiments_total", Help: "Experiments finished, by verdict.",
		}, []string{"verdict"}),
		activeFaults: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_active_faults", Help: "Faults currently applied, by kind.",
		}, []string{"kind"}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_guardrail_evaluations_total", Help: "Guardrail evaluations, by guardrail, kind and result (pass, fail, error).",
		}, []string{"guardrail", "kind", "result"}),
		breaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_guardrail_breaches_total", Help: "Guardrail breaches that halted (or failed) an experiment.",
		}, []string{"guardrail", "kind"}),
		evalDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "faultline_guardrail_evaluation_duration_seconds", Help: "Time to evaluate a guardrail once.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"kind"}),
		haltLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "faultline_halt_latency_seconds", Help: "Time from a halt decision (a guardrail breach, a signal, an operator) to the last fault reverted.",
			// 1ms to about 65s: network faults on many hosts can take seconds to revert.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}),
		ledgerOutstanding: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "faultline_ledger_entries_outstanding", Help: "Ledger entries not yet reverted.",
		}),
		faultsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_faults_applied_total", Help: "Faults applied, by kind.",
		}, []string{"kind"}),
		faultsReverted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_faults_reverted_total", Help: "Applied faults reverted successfully, by kind.",
		}, []string{"kind"}),
		revertFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_revert_failures_total", Help: "Reverts that failed, by kind; each leaves a ledger entry for recover.",
		}, []string{"kind"}),
		lastEvaluation: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_guardrail_last_evaluation_timestamp_seconds",
			Help: "When each guardrail was last evaluated (Unix time); alert when it stops moving during a run.",
		}, []string{"guardrail", "kind"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_guardrail_failing",
			Help: "1 when the guardrail's latest evaluation failed or could not see its source (error), else 0.",
		}, []string{"guardrail", "kind"}),
		load: newLoadCollectors(),
	}
	// Every verdict (experiments.Verdict) exists at 0 from the start, so that rate() and increase()
	// see the first experiment of each verdict.
	for _, v := range []string{"passed", "failed", "halted", "not-started", "refused", "aborted", "revert-incomplete"} {
		m.experiments.WithLabelValues(v)
	}
	m.Registry.MustRegister(m.experiments, m.activeFaults, m.evaluations, m.breaches, m.evalDuration,
		m.haltLatency, m.ledgerOutstanding, m.faultsApplied, m.faultsReverted, m.revertFailures,
		m.lastEvaluation, m.failing,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector())
	m.Registry.MustRegister(m.load.all()...)
	return m
}

// Experiment counts a finished experiment.
func (m *Metrics) Experiment(verdict string) {
	if m != nil {
		m.experiments.WithLabelValues(verdict).Inc()
	}
}

// FaultApplied counts an applied fault and marks it active.
func (m *Metrics) FaultApplied(kind string) {
	if m != nil {
		m.faultsApplied.WithLabelValues(kind).Inc()
		m.activeFaults.WithLabelValues(kind).Inc()
	}
}

// FaultReverted marks a fault no longer active; failed reverts are counted.
func (m *Metrics) FaultReverted(kind string, ok bool) {
	if m == nil {
		return
	}
	m.activeFaults.WithLabelValues(kind).Dec()
	if ok {
		m.faultsReverted.WithLabelValues(kind).Inc()
	} else {
		m.revertFailures.WithLabelValues(kind).Inc()
	}
}

// Evaluation records one guardrail evaluation; result is pass, fail or error.
func (m *Metrics) Evaluation(guardrail, kind, result string, d time.Duration) {
	if m != nil {
		m.evaluations.WithLabelValues(guardrail, kind, result).Inc()
		m.evalDuration.WithLabelValues(kind).Observe(d.Seconds())
		m.lastEvaluation.WithLabelValues(guardrail, kind).SetToCurrentTime()
		failing := 0.0
		if result != "pass" {
			failing = 1
		}
		m.failing.WithLabelValues(guardrail, kind).Set(failing)
	}
}

// Breach counts a breach.
func (m *Metrics) Breach(guardrail, kind string) {
	if m != nil {
		m.breaches.WithLabelValues(guardrail, kind).Inc()
	}
}

// HaltLatency records the time from halt decision to last revert.
func (m *Metrics) HaltLatency(d time.Duration) {
	if m != nil {
		m.haltLatency.Observe(d.Seconds())
	}
}

// LedgerOutstanding sets the count of open ledger entries.
func (m *Metrics) LedgerOutstanding(n int) {
	if m != nil {
		m.ledgerOutstanding.Set(float64(n))
	}
}
