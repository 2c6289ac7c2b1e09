package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reload holds the daemon's config reload metrics, named as Prometheus and blackbox_exporter name
// theirs, so that alerts people already have for those (last reload failed, config older than N)
// fit with a rename. Nil-safe like Metrics.
type Reload struct {
	successful prometheus.Gauge
	successAt  prometheus.Gauge
	reloads    *prometheus.CounterVec
}

// NewReload registers the reload metrics on reg.
func NewReload(reg prometheus.Registerer) *Reload {
	r := &Reload{
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
	reg.MustRegister(r.successful, r.successAt, r.reloads)
	return r
}

// Loaded records the config loaded at start: it is the last successful load.
func (r *Reload) Loaded(at time.Time) {
	if r != nil {
		r.successful.Set(1)
		r.successAt.Set(float64(at.UnixNano()) / 1e9)
	}
}

// Reloaded records a reload and whether it succeeded.
func (r *Reload) Reloaded(ok bool, at time.Time) {
	if r == nil {
		return
	}
	if !ok {
		r.successful.Set(0)
		r.reloads.WithLabelValues("failure").Inc()
		return
	}
	r.Loaded(at)
	r.reloads.WithLabelValues("success").Inc()
}

// ForgetSchedule drops a schedule's series when a reload removed it, so that its last next-start
// time does not linger as if it were still due.
func (d *Daemon) ForgetSchedule(schedule string) {
	if d != nil {
		d.nextStart.DeleteLabelValues(schedule)
	}
}
