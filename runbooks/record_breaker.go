package runbooks

import (
	"fmt"
	"strings"
	"time"
)

// BreakerPresets are the circuit-breaker metric conventions the recorder knows; docs/recovery.md
// lists the queries of each. "custom" takes the queries from the runbook.
var BreakerPresets = []string{"resilience4j", "envoy", "istio", "haproxy", "nginxplus", "kong", "polly", "linkerd", "gobreaker", "custom"}

// BreakerSpec names circuit breakers to record from Prometheus: every label set the preset's (or
// the custom) level query returns is one breaker with its own timeline.
type BreakerSpec struct {
	Name     string `yaml:"name,omitempty" json:"name,omitempty" doc:"Names this group of breakers in figure keys (default: the preset), e.g. checkout-haproxy."`
	Preset   string `yaml:"preset" json:"preset" enum:"resilience4j,envoy,istio,haproxy,nginxplus,kong,polly,linkerd,gobreaker,custom" doc:"The metric convention: a preset for what the breaker library or proxy exports, or custom (level, edge, transitionTime/transitionAge)."`
	Selector string `yaml:"selector,omitempty" json:"selector,omitempty" doc:"Label matchers added to every query of the preset, e.g. job=\"checkout\",proxy=\"be_app\". Empty records every breaker the preset finds."`

	Level          string   `yaml:"level,omitempty" json:"level,omitempty" doc:"custom: PromQL for the breaker state. With stateLabel, one series per state valued 1 for the current one; without, 0 is closed and any other value open."`
	StateLabel     string   `yaml:"stateLabel,omitempty" json:"stateLabel,omitempty" doc:"custom: the label of level that names the state (e.g. state)."`
	OpenStates     []string `yaml:"openStates,omitempty" json:"openStates,omitempty" doc:"custom, with stateLabel: values meaning open (default open, forced_open)."`
	HalfOpenStates []string `yaml:"halfOpenStates,omitempty" json:"halfOpenStates,omitempty" doc:"custom, with stateLabel: values meaning half-open (default half_open, half-open)."`
	Edge           string   `yaml:"edge,omitempty" json:"edge,omitempty" doc:"custom: a counter that grows by one per open (transitions or ejections), so that an open shorter than the scrape interval is still counted. A plain selector keeps the exact scrape times."`
	TransitionTime string   `yaml:"transitionTime,omitempty" json:"transitionTime,omitempty" doc:"custom: a gauge holding the Unix time (seconds) of the breaker's last transition; narrows the time of a transition to what the gauge says."`
	TransitionAge  string   `yaml:"transitionAge,omitempty" json:"transitionAge,omitempty" doc:"custom: a gauge holding the whole seconds since the last transition (like HAProxy's check_last_change_seconds); exclusive with transitionTime."`

	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty" doc:"How often the state is queried live during the experiment (default 5s); the timeline itself comes from the raw samples read back after the experiment."`
	Settle   Duration `yaml:"settle,omitempty" json:"settle,omitempty" doc:"How long after the revert to wait for every breaker to close before the recording ends (default 60s)."`
	Lookback Duration `yaml:"lookback,omitempty" json:"lookback,omitempty" doc:"How far before the experiment the samples are read, to know each breaker's state at the start (default 1m; at least two scrape intervals)."`

	Address         string               `yaml:"address" json:"address" doc:"Base URL of the Prometheus HTTP API, as for a prometheus guardrail."`
	Timeout         Duration             `yaml:"timeout,omitempty" json:"timeout,omitempty" doc:"Per-query timeout (default 10s)."`
	Headers         map[string]string    `yaml:"headers,omitempty" json:"headers,omitempty" doc:"Extra request headers, e.g. X-Scope-OrgID."`
	BearerTokenFile string               `yaml:"bearerTokenFile,omitempty" json:"bearerTokenFile,omitempty" doc:"File holding a bearer token, read on every query."`
	BasicAuth       *PrometheusBasicAuth `yaml:"basicAuth,omitempty" json:"basicAuth,omitempty" doc:"HTTP basic authentication; exclusive with bearerTokenFile."`
	TLS             *PrometheusTLS       `yaml:"tls,omitempty" json:"tls,omitempty" doc:"TLS settings for an https:// address."`
}

// Breaker defaults.
const (
	DefaultBreakerInterval = 5 * time.Second
	DefaultBreakerSettle   = time.Minute
	DefaultBreakerLookback = time.Minute
	DefaultBreakerTimeout  = 10 * time.Second
)

// Connection returns the spec's Prometheus connection as a PrometheusProbe (no query), so that
// the breaker recorder shares the guardrail's client and validation.
func (b *BreakerSpec) Connection() *PrometheusProbe {
	return &PrometheusProbe{Address: b.Address, Timeout: b.Timeout, Headers: b.Headers, BearerTokenFile: b.BearerTokenFile, BasicAuth: b.BasicAuth, TLS: b.TLS}
}

// GroupName is the name of the breakers in figure keys: Name, else the preset.
func (b *BreakerSpec) GroupName() string {
	if b.Name != "" {
		return b.Name
	}
	return b.Preset
}

func validateRecord(v *Validator, path string, r *Record) {
	if r == nil {
		return
	}
	names := map[string]bool{}
	for i := range r.Breakers {
		b := &r.Breakers[i]
		p := fmt.Sprintf("%s.breakers[%d]", path, i)
		b.validate(v, p)
		if n := b.GroupName(); n != "" && names[n] {
			v.Errorf(p+".name", "two breaker entries are both named %q: give each a distinct name (their figure keys would collide)", n)
		} else {
			names[n] = true
		}
	}
}

func (b *BreakerSpec) validate(v *Validator, path string) {
	known := false
	for _, p := range BreakerPresets {
		known = known || b.Preset == p
	}
	switch {
	case b.Preset == "":
		v.Errorf(path+".preset", "is required: one of %s", strings.Join(BreakerPresets, ", "))
	case !known:
		v.Errorf(path+".preset", "unknown preset %q: want one of %s", b.Preset, strings.Join(BreakerPresets, ", "))
	}
	if b.Name != "" && !nameRE.MatchString(b.Name) {
		v.Errorf(path+".name", "letters, digits, '.', '_' and '-' only, e.g. checkout-haproxy")
	}
	if _, err := ParseMatchers(b.Selector); err != nil {
		v.Errorf(path+".selector", "%v", err)
	}
	custom := map[string]string{"level": b.Level, "edge": b.Edge, "transitionTime": b.TransitionTime, "transitionAge": b.TransitionAge, "stateLabel": b.StateLabel}
	if b.Preset == "custom" {
		if b.Selector != "" {
			v.Errorf(path+".selector", "is for the presets' queries; with preset custom, put the matchers in your queries")
		}
		if b.Level == "" && b.Edge == "" {
			v.Errorf(path+".level", "is required with preset custom (or give edge alone), e.g. my_breaker_open")
		}
		for _, f := range []string{"level", "edge", "transitionTime", "transitionAge"} {
			if q := custom[f]; q != "" {
				if err := CheckPromQL(q); err != nil {
					v.Errorf(path+"."+f, "%v", err)
				}
			}
		}
		if b.TransitionTime != "" && b.TransitionAge != "" {
			v.Errorf(path+".transitionAge", "transitionTime and transitionAge are exclusive: choose one")
		}
		if b.StateLabel != "" && !labelNameRE.MatchString(b.StateLabel) {
			v.Errorf(path+".stateLabel", "%q is not a label name", b.StateLabel)
		}
		if b.StateLabel == "" && (len(b.OpenStates) > 0 || len(b.HalfOpenStates) > 0) {
			v.Errorf(path+".stateLabel", "is required with openStates/halfOpenStates: the label whose values they name")
		}
	} else if known {
		for _, f := range []string{"level", "edge", "transitionTime", "transitionAge", "stateLabel"} {
			if custom[f] != "" {
				v.Errorf(path+"."+f, "is for preset custom; preset %s has its own queries (narrow them with selector)", b.Preset)
			}
		}
	}
	for i, d := range []Duration{b.Interval, b.Settle, b.Lookback, b.Timeout} {
		if d < 0 {
			v.Errorf(path+"."+[]string{"interval", "settle", "lookback", "timeout"}[i], "must not be negative")
		}
	}
	if b.Interval > 0 && b.Interval.D() < MinInterval {
		v.Errorf(path+".interval", "must be at least %s", MinInterval)
	}
	b.Connection().validateConnection(v, path)
}
