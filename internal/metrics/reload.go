package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reloadMetrics are named as Prometheus and blackbox_exporter name theirs, so that the alerts
// people already have for those (last reload failed, config older than N) fit with a rename.
type reloadMetrics struct {
	successful prometheus.Gauge
	successAt  prometheus.Gauge
	reloads    *prometheus.CounterVec
}

func newReloadMetrics() reloadMetrics {
	return reloadMetrics{
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "faultline_config_last_reload_successful",
			Help: "1 when the last reload of the daemon config (and its runbooks) succeeded, 0 when it was refused; the old config keeps running then.",
		}),
		successAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "faultline_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful load of the daemon config (the start counts).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_config_reloads_total",
			Help: "Reloads of the daemon config (SIGHUP, POST /api/v1/reload, a changed file), by result: success or failure.",
		}, []string{"result"}),
	}
}

func (r reloadMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.successful, r.successAt, r.reloads}
}

// ConfigLoaded records the config loaded at start: it is the last successful load.
func (d *Daemon) ConfigLoaded(at time.Time) {
	if d != nil {
		d.reload.successful.Set(1)
		d.reload.successAt.Set(float64(at.UnixNano()) / 1e9)
	}
}

// ConfigReloaded records a reload and whether it succeeded.
func (d *Daemon) ConfigReloaded(ok bool, at time.Time) {
	if d == nil {
		return
	}
	if !ok {
		d.reload.successful.Set(0)
		d.reload.reloads.WithLabelValues("failure").Inc()
		return
	}
	d.ConfigLoaded(at)
	d.reload.reloads.WithLabelValues("success").Inc()
}

// ForgetSchedule drops a schedule's series when a reload removed it, so that its last next-start
// time does not linger as if it were still due.
func (d *Daemon) ForgetSchedule(schedule string) {
	if d != nil {
		d.nextStart.DeleteLabelValues(schedule)
	}
}
