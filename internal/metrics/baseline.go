package metrics

import "github.com/prometheus/client_golang/prometheus"

func newRegressions() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "faultline_baseline_regressions",
		Help: "Recovery figures of the schedule's latest run that got worse than its previous passed run (regressed, unreached or missing); 0 when none.",
	}, []string{"schedule"})
}

// BaselineRegressions records how many figures of a schedule's latest run got worse than its
// previous passed run.
func (d *Daemon) BaselineRegressions(schedule string, n int) {
	if d != nil {
		d.regressions.WithLabelValues(schedule).Set(float64(n))
	}
}
