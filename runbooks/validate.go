package runbooks

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MinInterval is the fastest a guardrail may be evaluated.
const MinInterval = 250 * time.Millisecond

// Validator collects semantic problems by field path; the loader turns paths into file positions.
type Validator struct {
	problems []problem
}

type problem struct{ path, msg string }

// Errorf records a problem at path.
func (v *Validator) Errorf(path, format string, args ...any) {
	v.problems = append(v.problems, problem{path, fmt.Sprintf(format, args...)})
}

// specValidator is implemented by every fault spec and probe; the union fields are validated
// through it so adding a kind never touches this file.
type specValidator interface {
	validate(v *Validator, path string)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// Validate checks a decoded runbook and returns every problem, with paths (no positions).
func (r *Runbook) Validate() *Validator {
	v := &Validator{}
	if r.APIVersion != APIVersion {
		v.Errorf("apiVersion", "must be %q, got %q", APIVersion, r.APIVersion)
	}
	if r.Kind != "Runbook" {
		v.Errorf("kind", "must be \"Runbook\", got %q", r.Kind)
	}
	if !nameRE.MatchString(r.Metadata.Name) {
		v.Errorf("metadata.name", "is required: letters, digits, '.', '_' and '-', e.g. checkout-gameday")
	}
	r.Environment.validate(v, "environment")
	if r.Policy.MaxTargets < 0 {
		v.Errorf("policy.maxTargets", "must not be negative")
	}
	validateGuardrails(v, "guardrails", r.Guardrails)
	if r.Load != nil {
		r.Load.validate(v, "load")
	}
	r.validateLoadGuardrails(v)
	r.Baseline.validate(v, "baseline")
	defer r.validateKubernetes(v) // after the faults: it asks which kinds they are
	defer r.validateRemote(v)
	defer r.validateObjectives(v)
	if len(r.Experiments) == 0 {
		v.Errorf("experiments", "at least one experiment is required")
	}
	seen := map[string]bool{}
	for i := range r.Experiments {
		e := &r.Experiments[i]
		p := fmt.Sprintf("experiments[%d]", i)
		if !nameRE.MatchString(e.Name) {
			v.Errorf(p+".name", "is required: letters, digits, '.', '_' and '-'")
		} else if seen[e.Name] {
			v.Errorf(p+".name", "duplicate experiment name %q", e.Name)
		}
		seen[e.Name] = true
		if e.Duration <= 0 {
			v.Errorf(p+".duration", "is required and must be positive, e.g. 30s")
		}
		if len(e.Faults) == 0 {
			v.Errorf(p+".faults", "at least one fault is required")
		}
		faultNames := map[string]bool{}
		for j := range e.Faults {
			f := &e.Faults[j]
			fp := fmt.Sprintf("%s.faults[%d]", p, j)
			validateUnion(v, fp, f, "kind", "fault")
			if f.Name == "" {
				f.Name = fmt.Sprintf("%s-%d", f.Kind(), j)
			}
			if faultNames[f.Name] {
				v.Errorf(fp+".name", "duplicate fault name %q in this experiment", f.Name)
			}
			faultNames[f.Name] = true
		}
		validateGuardrails(v, p+".hypothesis", e.Hypothesis)
		if e.Load != nil {
			e.Load.validate(v, p+".load")
		}
		validateAutoscalers(v, p+".record", e.Record)
		validateRecord(v, p+".record", e.Record)
		if e.Recovery != nil && e.Recovery.Within <= 0 {
			v.Errorf(p+".recovery.within", "is required and must be positive, e.g. 60s")
		}
	}
	return v
}

func (e *Environment) validate(v *Validator, path string) {
	if e.Name == "" {
		v.Errorf(path+".name", "is required: name the environment this runbook may touch, e.g. staging-eu1")
	}
	switch e.Type {
	case "staging", "golden-copy", "local":
	case "":
		v.Errorf(path+".type", "is required: staging, golden-copy or local")
	default:
		v.Errorf(path+".type", "%q is not allowed: faultline runs only against staging, golden-copy or local environments", e.Type)
	}
	for i, h := range e.Hosts {
		if _, err := filepath.Match(h, ""); err != nil || h == "" {
			v.Errorf(fmt.Sprintf("%s.hosts[%d]", path, i), "%q is not a valid host name pattern", h)
		}
	}
}

// validateUnion checks that exactly one member is set, then validates that member.
func validateUnion(v *Validator, path string, ptr any, marker, what string) {
	set := setMembers(ptr, marker)
	switch len(set) {
	case 0:
		var names []string
		for _, m := range members(typeOf(ptr), marker) {
			names = append(names, m.field)
		}
		v.Errorf(path, "a %s must set exactly one of: %s", what, strings.Join(names, ", "))
		return
	case 1:
	default:
		names := make([]string, len(set))
		for i, m := range set {
			names[i] = m.field
		}
		v.Errorf(path, "a %s must set exactly one kind, got %s", what, strings.Join(names, " and "))
		return
	}
	if sv, ok := set[0].value.(specValidator); ok {
		sv.validate(v, path+"."+set[0].field)
	}
}

func validateGuardrails(v *Validator, path string, gs []Guardrail) {
	seen := map[string]bool{}
	for i := range gs {
		g := &gs[i]
		p := fmt.Sprintf("%s[%d]", path, i)
		if !nameRE.MatchString(g.Name) {
			v.Errorf(p+".name", "is required: letters, digits, '.', '_' and '-'")
		} else if seen[g.Name] {
			v.Errorf(p+".name", "duplicate guardrail name %q", g.Name)
		}
		seen[g.Name] = true
		if g.Interval != 0 && g.Interval.D() < MinInterval {
			v.Errorf(p+".interval", "%s is too fast: the minimum is %s", g.Interval, MinInterval)
		}
		switch g.OnError {
		case "", "fail", "ignore":
		default:
			v.Errorf(p+".onError", "must be fail or ignore, got %q", g.OnError)
		}
		validateUnion(v, p, g, "probe", "guardrail")
	}
}

func (h *HTTPProbe) validate(v *Validator, path string) {
	validateHTTPRequest(v, path, h.URL, h.Method)
	for i, s := range h.ExpectStatus {
		if _, _, err := ParseStatusRange(s); err != nil {
			v.Errorf(fmt.Sprintf("%s.expectStatus[%d]", path, i), "%v", err)
		}
	}
}

// ParseStatusRange reads "200", "2xx" or "200-299" into an inclusive range.
func ParseStatusRange(s string) (lo, hi int, err error) {
	bad := fmt.Errorf("%q is not a status code (200), class (2xx) or range (200-299)", s)
	switch {
	case len(s) == 3 && strings.HasSuffix(strings.ToLower(s), "xx"):
		c, err := strconv.Atoi(s[:1])
		if err != nil || c < 1 || c > 5 {
			return 0, 0, bad
		}
		return c * 100, c*100 + 99, nil
	case strings.Contains(s, "-"):
		a, b, _ := strings.Cut(s, "-")
		lo, err1 := strconv.Atoi(a)
		hi, err2 := strconv.Atoi(b)
		if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
			return 0, 0, bad
		}
		return lo, hi, nil
	default:
		c, err := strconv.Atoi(s)
		if err != nil || c < 100 || c > 599 {
			return 0, 0, bad
		}
		return c, c, nil
	}
}

func (t *ProcessTarget) validate(v *Validator, path string) {
	switch {
	case t.PidFile == "" && t.Exe == "":
		v.Errorf(path, "select processes with pidFile or exe")
	case t.PidFile != "" && t.Exe != "":
		v.Errorf(path, "pidFile and exe are exclusive: choose one")
	}
	if t.Exe != "" && strings.Contains(t.Exe, "/") {
		v.Errorf(path+".exe", "%q must be an executable name, not a path (use pidFile for one process)", t.Exe)
	}
	if t.Count < 0 {
		v.Errorf(path+".count", "must not be negative")
	}
	if t.Percent < 0 || t.Percent > 100 {
		v.Errorf(path+".percent", "must be between 0 and 100, got %g", t.Percent)
	}
	if t.Count > 0 && t.Percent > 0 {
		v.Errorf(path, "count and percent are exclusive: choose one")
	}
}

func (k *ProcessKill) validate(v *Validator, path string) {
	k.ProcessTarget.validate(v, path)
	if k.Signal != "" {
		if _, ok := Signal(k.Signal); !ok {
			v.Errorf(path+".signal", "%q is not a supported signal (%s)", k.Signal, signalNames)
		}
	}
}

func (p *ProcessPause) validate(v *Validator, path string) {
	p.ProcessTarget.validate(v, path)
}

// validateHTTPRequest checks the URL and method of a request faultline sends (an HTTP guardrail,
// a load target).
func validateHTTPRequest(v *Validator, path, rawURL, method string) {
	u, err := url.Parse(rawURL)
	if rawURL == "" {
		v.Errorf(path+".url", "is required")
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.Errorf(path+".url", "%q is not an absolute http:// or https:// URL", rawURL)
	}
	switch strings.ToUpper(method) {
	case "", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
	default:
		v.Errorf(path+".method", "%q is not an HTTP method", method)
	}
}
