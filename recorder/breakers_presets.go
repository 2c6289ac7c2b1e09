package recorder

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/faultline-dev/faultline/runbooks"
)

// Breaker states as the timelines name them.
const (
	stateClosed   = "closed"
	stateOpen     = "open"
	stateHalfOpen = "half-open"
)

// breakerQueries is what one breaker group is recorded from. Every query is a PromQL expression;
// a plain selector is read back as raw samples (exact scrape times), anything else with a range
// query at a fixed step.
type breakerQueries struct {
	// level gives the state: one series per state valued 1 for the current one (stateLabel set,
	// mapped by labelState), or a number (numState).
	level      string
	stateLabel string
	labelState func(string) string
	numState   func(float64) string
	// edge counts opens (toLabel empty) or transitions into the state toLabel names (toState). An
	// evidence edge (resilience4j's rejected calls) proves the breaker was open at least once in
	// a scrape interval where it grew, but not how often.
	edge     string
	toLabel  string
	toState  func(string) string
	evidence bool
	// age is a gauge of whole seconds since the last transition; stamp the Unix time of it.
	age, stamp string
	// drop are labels that are not part of a breaker's identity (besides __name__ and the state
	// labels); keys are the labels that name it in the subject, in order.
	drop []string
	keys []string
}

// queries returns the queries of spec's preset (or its custom queries), with the selector added.
func presetQueries(spec *runbooks.BreakerSpec) (breakerQueries, error) {
	sel := strings.TrimSpace(spec.Selector)
	with := func(metric, fixed string) string {
		var m []string
		if fixed != "" {
			m = append(m, fixed)
		}
		if sel != "" {
			m = append(m, sel)
		}
		return metric + "{" + strings.Join(m, ",") + "}"
	}
	lower := func(m map[string]string) func(string) string {
		return func(v string) string { return m[strings.ToLower(v)] }
	}
	switch spec.Preset {
	case "resilience4j":
		return breakerQueries{
			level: with("resilience4j_circuitbreaker_state", ""), stateLabel: "state",
			labelState: lower(map[string]string{"closed": stateClosed, "disabled": stateClosed, "metrics_only": stateClosed, "open": stateOpen, "forced_open": stateOpen, "half_open": stateHalfOpen}),
			edge:       with("resilience4j_circuitbreaker_not_permitted_calls_total", ""), evidence: true,
			drop: []string{"kind"}, keys: []string{"name"},
		}, nil
	case "envoy", "istio":
		key := "envoy_cluster_name"
		if spec.Preset == "istio" {
			key = "cluster_name"
		}
		return breakerQueries{
			level:    with("envoy_cluster_outlier_detection_ejections_active", ""),
			numState: func(v float64) string { return openIf(v > 0) },
			edge:     with("envoy_cluster_outlier_detection_ejections_enforced_total", ""), evidence: true,
			keys: []string{key},
		}, nil
	case "haproxy":
		return breakerQueries{
			level: with("haproxy_server_status", ""), stateLabel: "state",
			labelState: lower(map[string]string{"up": stateClosed, "drain": stateClosed, "nolb": stateClosed, "down": stateOpen, "maint": stateOpen}),
			edge:       with("haproxy_server_check_up_down_total", ""),
			age:        with("haproxy_server_check_last_change_seconds", ""),
			keys:       []string{"proxy", "server"},
		}, nil
	case "nginxplus":
		return breakerQueries{
			level: with("nginxplus_upstream_server_state", ""),
			// 1 up, 2 draining, 3 down, 4 unavail, 5 checking, 6 unhealthy (the exporter's mapping).
			numState: func(v float64) string {
				switch v {
				case 1, 2:
					return stateClosed
				case 5:
					return stateHalfOpen
				}
				return stateOpen
			},
			edge: with("", `__name__=~"nginxplus_upstream_server_unavail|nginxplus_upstream_server_health_checks_unhealthy"`),
			keys: []string{"upstream", "server"},
		}, nil
	case "kong":
		return breakerQueries{
			level: with("kong_upstream_target_health", ""), stateLabel: "state",
			labelState: lower(map[string]string{"healthy": stateClosed, "healthchecks_off": stateClosed, "unhealthy": stateOpen, "dns_error": stateOpen}),
			drop:       []string{"address"}, keys: []string{"upstream", "target"},
		}, nil
	case "polly":
		return breakerQueries{
			edge:    with("resilience_polly_strategy_events_total", `event_name=~"OnCircuitOpened|OnCircuitHalfOpened|OnCircuitClosed"`),
			toLabel: "event_name",
			toState: func(v string) string {
				return map[string]string{"OnCircuitOpened": stateOpen, "OnCircuitHalfOpened": stateHalfOpen, "OnCircuitClosed": stateClosed}[v]
			},
			drop: []string{"event_severity", "event_type", "exception_type", "operation_key"},
			keys: []string{"pipeline_name", "strategy_name"},
		}, nil
	case "linkerd":
		return breakerQueries{
			level:    with("outbound_http_balancer_endpoints", `endpoint_state="pending"`),
			numState: func(v float64) string { return openIf(v > 0) },
			drop:     []string{"endpoint_state"},
			keys:     []string{"backend_namespace", "backend_name", "backend_port"},
		}, nil
	case "gobreaker":
		return breakerQueries{
			level: with("gobreaker_state", ""), stateLabel: "state",
			labelState: lower(map[string]string{"closed": stateClosed, "open": stateOpen, "half-open": stateHalfOpen}),
			edge:       with("gobreaker_transitions_total", ""), toLabel: "to",
			toState: lower(map[string]string{"closed": stateClosed, "open": stateOpen, "half-open": stateHalfOpen}),
			drop:    []string{"from"}, keys: []string{"name"},
		}, nil
	case "custom":
		q := breakerQueries{level: spec.Level, stateLabel: spec.StateLabel, edge: spec.Edge, age: spec.TransitionAge, stamp: spec.TransitionTime}
		if q.stateLabel != "" {
			m := map[string]string{}
			opens, halves := spec.OpenStates, spec.HalfOpenStates
			if len(opens) == 0 {
				opens = []string{"open", "forced_open"}
			}
			if len(halves) == 0 {
				halves = []string{"half_open", "half-open"}
			}
			for _, s := range opens {
				m[s] = stateOpen
			}
			for _, s := range halves {
				m[s] = stateHalfOpen
			}
			q.labelState = func(v string) string {
				if s, ok := m[v]; ok {
					return s
				}
				return stateClosed
			}
		} else {
			q.numState = func(v float64) string { return openIf(v != 0) }
		}
		return q, nil
	}
	return breakerQueries{}, fmt.Errorf("unknown breaker preset %q: want one of %s", spec.Preset, strings.Join(runbooks.BreakerPresets, ", "))
}

func openIf(open bool) string {
	if open {
		return stateOpen
	}
	return stateClosed
}

// all lists the queries that are set, for messages and the result document.
func (q breakerQueries) all() []string {
	var out []string
	for _, s := range []string{q.level, q.edge, q.age, q.stamp} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// resolution says in words how precisely the times of these queries are known.
func (q breakerQueries) resolution() string {
	var b strings.Builder
	switch {
	case q.level != "":
		b.WriteString("state from the raw samples: each transition lies between two scrapes (± half the scrape gap)")
	default:
		b.WriteString("state from transition counters only: each transition lies between two scrapes (± half the scrape gap), order within one gap by the breaker's cycle")
	}
	switch {
	case q.edge != "" && q.evidence:
		b.WriteString("; an open shorter than a scrape is seen through the edge counter (at least one per scrape gap)")
	case q.edge != "":
		b.WriteString("; opens shorter than a scrape are counted by the edge counter")
	default:
		b.WriteString("; no edge counter: an open shorter than the scrape interval can be missed")
	}
	if q.age != "" || q.stamp != "" {
		b.WriteString("; the last transition before a scrape narrowed by the transition-time gauge")
	}
	return b.String()
}

var plainSelectorRE = regexp.MustCompile(`^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(\{.*\})?\s*$`)

// isSelector reports whether q is a plain vector selector, whose raw samples can be read back
// with a range selector.
func isSelector(q string) bool {
	m := plainSelectorRE.FindStringSubmatch(q)
	return m != nil && (m[1] != "" || m[2] != "") && !strings.Contains(q, "}[") && strings.Count(q, "{") <= 1
}
