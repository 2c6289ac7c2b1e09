//go:build linux

package proxyserver

import (
	"github.com/prometheus/client_golang/prometheus"
)

// serverMetrics are the proxy server's own metrics. Connection counts are read from the proxies
// when scraped (Collector), so the data path carries no metric updates.
type serverMetrics struct {
	changes *prometheus.CounterVec
	toxics  *prometheus.GaugeVec
}

func newServerMetrics() *serverMetrics {
	return &serverMetrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "faultline_proxy_toxic_changes_total",
			Help: "Changes to a proxy's toxic sets, by action: set, renew, delete, expire (the owner stopped renewing), reset.",
		}, []string{"proxy", "action"}),
		toxics: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "faultline_proxy_toxic_sets",
			Help: "Owners holding toxics on a proxy now (0: it passes traffic untouched).",
		}, []string{"proxy"}),
	}
}

func (m *serverMetrics) change(proxy, action string) { m.changes.WithLabelValues(proxy, action).Inc() }
func (m *serverMetrics) sets(proxy string, n int)    { m.toxics.WithLabelValues(proxy).Set(float64(n)) }

var (
	descAccepted = prometheus.NewDesc("faultline_proxy_connections_accepted_total", "Client connections a proxy accepted.", []string{"proxy"}, nil)
	descDialErr  = prometheus.NewDesc("faultline_proxy_upstream_dial_errors_total", "Client connections whose upstream dial failed (the client was reset).", []string{"proxy"}, nil)
	descOpen     = prometheus.NewDesc("faultline_proxy_connections_open", "Connections a proxy holds open now.", []string{"proxy"}, nil)
)

// Register puts the server's metrics on reg.
func (s *Server) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.met.changes, s.met.toxics, (*statsCollector)(s)} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	for _, name := range s.Names() {
		s.met.sets(name, 0) // a series from the start, so "no toxics" is visible, not absent
	}
	return nil
}

type statsCollector Server

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAccepted
	ch <- descDialErr
	ch <- descOpen
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ps := range (*Server)(c).Status() {
		ch <- prometheus.MustNewConstMetric(descAccepted, prometheus.CounterValue, float64(ps.Stats.Accepted), ps.Name)
		ch <- prometheus.MustNewConstMetric(descDialErr, prometheus.CounterValue, float64(ps.Stats.DialErrors), ps.Name)
		ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(ps.Stats.Open), ps.Name)
	}
}
