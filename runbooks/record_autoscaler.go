package runbooks

import (
	"fmt"
	"regexp"
	"time"
)

// AutoscalerSpec names one autoscaler to record besides the HPAs of the workloads the faults
// touch. Exactly one of hpa, scaledObject and prometheus is set.
type AutoscalerSpec struct {
	HPA          string                `yaml:"hpa,omitempty" json:"hpa,omitempty" doc:"A HorizontalPodAutoscaler (autoscaling/v2) as NAMESPACE/NAME, watched through the Kubernetes API."`
	ScaledObject string                `yaml:"scaledObject,omitempty" json:"scaledObject,omitempty" doc:"A KEDA ScaledObject as NAMESPACE/NAME, recorded through the HPA KEDA manages for it (keda-hpa-NAME)."`
	Prometheus   *AutoscalerPrometheus `yaml:"prometheus,omitempty" json:"prometheus,omitempty" doc:"An autoscaler faultline cannot watch (a cloud autoscaling group, a custom controller), recorded from a PromQL query giving its capacity, at the scrape resolution."`
}

// AutoscalerPrometheus records capacity from Prometheus: every series the query returns is one
// autoscaler (one group), named by its labels. The connection fields are those of the Prometheus
// guardrail.
type AutoscalerPrometheus struct {
	Name           string   `yaml:"name" json:"name" doc:"Names this source in figure keys and the result, e.g. workers-asg."`
	Address        string   `yaml:"address" json:"address" doc:"Base URL of the Prometheus HTTP API, e.g. http://prometheus:9090."`
	Query          string   `yaml:"query" json:"query" doc:"PromQL giving the current capacity per group, e.g. kube_horizontalpodautoscaler_status_current_replicas{namespace=\"shop\"}."`
	DesiredQuery   string   `yaml:"desiredQuery,omitempty" json:"desiredQuery,omitempty" doc:"Optional PromQL giving the desired capacity with the same labels, e.g. kube_horizontalpodautoscaler_status_desired_replicas."`
	ScrapeInterval Duration `yaml:"scrapeInterval,omitempty" json:"scrapeInterval,omitempty" doc:"How often Prometheus scrapes the exporter (default 15s); part of every time's uncertainty."`
	Interval       Duration `yaml:"interval,omitempty" json:"interval,omitempty" doc:"How often faultline evaluates the query (default 1s, at least 250ms); the other part of the uncertainty."`
	Timeout        Duration `yaml:"timeout,omitempty" json:"timeout,omitempty" doc:"Per-query timeout (default: the smaller of the interval and 5s)."`

	Headers         map[string]string    `yaml:"headers,omitempty" json:"headers,omitempty" doc:"Extra request headers, e.g. X-Scope-OrgID for Mimir or Cortex tenants."`
	BearerTokenFile string               `yaml:"bearerTokenFile,omitempty" json:"bearerTokenFile,omitempty" doc:"File holding a bearer token, read on every query."`
	BasicAuth       *PrometheusBasicAuth `yaml:"basicAuth,omitempty" json:"basicAuth,omitempty" doc:"HTTP basic authentication; exclusive with bearerTokenFile."`
	TLS             *PrometheusTLS       `yaml:"tls,omitempty" json:"tls,omitempty" doc:"TLS settings for an https:// address."`
}

// DefaultScrapeInterval is the scrape interval assumed when a Prometheus source does not state one
// (Prometheus's own default).
const DefaultScrapeInterval = 15 * time.Second

// Connection returns the source's connection settings in the form the Prometheus client of the
// guardrails takes, so that both share one transport (credentials, TLS, headers).
func (p *AutoscalerPrometheus) Connection() *PrometheusProbe {
	return &PrometheusProbe{Address: p.Address, Timeout: p.Timeout, Headers: p.Headers,
		BearerTokenFile: p.BearerTokenFile, BasicAuth: p.BasicAuth, TLS: p.TLS}
}

// Subject is how the spec's autoscaler is named in figure keys: "hpa NAMESPACE/NAME" (a
// ScaledObject's HPA too) or "prometheus NAME" (each series adds its labels).
func (s *AutoscalerSpec) Subject() string {
	switch {
	case s.HPA != "":
		return "hpa " + s.HPA
	case s.ScaledObject != "":
		ns, name, _ := splitNamespaced(s.ScaledObject)
		return "hpa " + ns + "/" + KEDAHPAName(name)
	case s.Prometheus != nil:
		return "prometheus " + s.Prometheus.Name
	}
	return ""
}

// KEDAHPAName is the name KEDA gives the HPA of a ScaledObject (unless the ScaledObject overrides
// it with advanced.horizontalPodAutoscalerConfig.name).
func KEDAHPAName(scaledObject string) string { return "keda-hpa-" + scaledObject }

// dnsNameRE is a Kubernetes object name (RFC 1123 subdomain) or namespace.
var dnsNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

func splitNamespaced(s string) (ns, name string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			ns, name = s[:i], s[i+1:]
			return ns, name, dnsNameRE.MatchString(ns) && dnsNameRE.MatchString(name) && len(name) <= 253
		}
	}
	return "", s, false
}

// validateAutoscalers checks record.autoscalers of one experiment.
func validateAutoscalers(v *Validator, path string, r *Record) {
	if r == nil {
		return
	}
	seen := map[string]bool{}
	for i := range r.Autoscalers {
		s := &r.Autoscalers[i]
		p := fmt.Sprintf("%s.autoscalers[%d]", path, i)
		n := 0
		for _, set := range []bool{s.HPA != "", s.ScaledObject != "", s.Prometheus != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			v.Errorf(p, "an autoscaler must set exactly one of: hpa, scaledObject, prometheus")
			continue
		}
		switch {
		case s.HPA != "":
			if _, _, ok := splitNamespaced(s.HPA); !ok {
				v.Errorf(p+".hpa", "%q is not NAMESPACE/NAME, e.g. shop/web", s.HPA)
			}
		case s.ScaledObject != "":
			if _, _, ok := splitNamespaced(s.ScaledObject); !ok {
				v.Errorf(p+".scaledObject", "%q is not NAMESPACE/NAME, e.g. shop/worker", s.ScaledObject)
			}
		default:
			s.Prometheus.validate(v, p+".prometheus")
		}
		if subj := s.Subject(); seen[subj] {
			v.Errorf(p, "%s is listed twice", subj)
		} else {
			seen[subj] = true
		}
	}
}

func (p *AutoscalerPrometheus) validate(v *Validator, path string) {
	if !nameRE.MatchString(p.Name) {
		v.Errorf(path+".name", "is required: letters, digits, '.', '_' and '-', e.g. workers-asg")
	}
	// The connection is the guardrail's and breaker recorder's: one check of address, headers,
	// credentials and TLS for all three.
	p.Connection().validateConnection(v, path)
	if p.Query == "" {
		v.Errorf(path+".query", "is required: PromQL giving the capacity per group, e.g. kube_horizontalpodautoscaler_status_current_replicas")
	} else if err := CheckPromQL(p.Query); err != nil {
		v.Errorf(path+".query", "%v", err)
	}
	if p.DesiredQuery != "" {
		if err := CheckPromQL(p.DesiredQuery); err != nil {
			v.Errorf(path+".desiredQuery", "%v", err)
		}
	}
	if p.ScrapeInterval < 0 {
		v.Errorf(path+".scrapeInterval", "must not be negative")
	}
	if p.Interval != 0 && p.Interval.D() < MinInterval {
		v.Errorf(path+".interval", "must be at least %s, got %s", MinInterval, p.Interval)
	}
	if p.Timeout < 0 {
		v.Errorf(path+".timeout", "must not be negative")
	}
}
