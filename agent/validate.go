package agent

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/runbooks"
	"gopkg.in/yaml.v3"
)

// Kinds the agent applies: the network kinds in any namespace it serves, the process kinds on a
// plain host only.
var (
	agentKinds   = runbooks.RemoteKinds
	processKinds = []string{"process-kill", "process-pause"}
)

// idRE keeps ids, run IDs and names safe in iptables comments, logs and URLs.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}$`)

// statusError is a request refused, with the HTTP status and rule the API answers; nothing was
// applied.
type statusError struct {
	status int
	rule   string
	msg    string
}

func (e *statusError) Error() string { return e.msg }

func statusf(status int, rule, format string, args ...any) error {
	return &statusError{status: status, rule: rule, msg: fmt.Sprintf(format, args...)}
}

func badf(rule, format string, args ...any) error {
	return statusf(http.StatusBadRequest, rule, format, args...)
}

// validateRequest checks a request as far as it can without the system: its fields, the fault's
// runbook validation, the target.
func validateRequest(req *agentapi.FaultRequest, maxLease time.Duration) error {
	if !idRE.MatchString(req.ID) {
		return badf("id", "id %q: letters, digits and ._:@+=- only, at most 128", req.ID)
	}
	if !idRE.MatchString(req.RunID) {
		return badf("runID", "runID %q: letters, digits and ._:@+=- only, at most 128", req.RunID)
	}
	if req.Owner == "" || len(req.Owner) > 256 {
		return badf("owner", "owner is required (who asks: a run's host and pid, a daemon's identity), at most 256 bytes")
	}
	if err := validateLease(req.Lease.D(), maxLease); err != nil {
		return err
	}
	if err := validateTarget(req.Target); err != nil {
		return err
	}
	kind := req.Fault.Kind()
	if !contains(agentKinds, kind) {
		return badf("kind", "fault kind %q is not one the agent applies: %s", kind, strings.Join(agentKinds, ", "))
	}
	if len(req.Fault.On) > 0 {
		return badf("on", "fault.on must be empty: the agent applies the fault here")
	}
	if k := req.Fault.ProcessKill; k != nil && k.Interval != 0 {
		return badf("interval", "processKill.interval must be empty: the run sends one kill per round")
	}
	if contains(processKinds, kind) && !req.Target.Host {
		return badf("target", "process faults act on the agent's host: target {host: true}")
	}
	if name, path := req.Fault.Netns(); name != "" || path != "" {
		return badf("netns", "fault.netns and fault.netnsPath must be empty: the agent sets them from target")
	}
	if req.Fault.Name != "" && !idRE.MatchString(req.Fault.Name) {
		return badf("name", "fault name %q: letters, digits and ._:@+=- only", req.Fault.Name)
	}
	return validateFault(req.Fault)
}

func validateLease(lease, maxLease time.Duration) error {
	if lease < 100*time.Millisecond || lease > maxLease {
		return badf("lease", "lease %s: must be between 100ms and %s (the agent's --max-lease)", lease, maxLease)
	}
	return nil
}

func validateTarget(t agentapi.Target) error {
	n := 0
	if t.Pod != nil {
		n++
		if t.Pod.Namespace == "" || t.Pod.Name == "" {
			return badf("target", "target.pod needs namespace and name")
		}
	}
	if t.Host {
		n++
	}
	if t.Netns != "" {
		n++
		if strings.ContainsAny(t.Netns, "/ ") || t.Netns == "." || t.Netns == ".." {
			return badf("target", "target.netns %q is not a namespace name", t.Netns)
		}
	}
	if n != 1 {
		return badf("target", "target must set exactly one of pod, host, netns")
	}
	return nil
}

// validateFault runs the runbook validation on the fault, placed in a minimal runbook.
func validateFault(f runbooks.Fault) error {
	rb := runbooks.Runbook{
		APIVersion:  runbooks.APIVersion,
		Kind:        "Runbook",
		Metadata:    runbooks.Metadata{Name: "agent"},
		Environment: runbooks.Environment{Name: "agent", Type: "local"},
		Experiments: []runbooks.Experiment{{Name: "agent", Duration: runbooks.Duration(time.Second), Faults: []runbooks.Fault{f}}},
	}
	b, err := yaml.Marshal(&rb)
	if err != nil {
		return badf("fault", "fault cannot be encoded: %v", err)
	}
	_, err = runbooks.Parse("fault", b)
	if err == nil {
		return nil
	}
	var list runbooks.ErrorList
	if !errors.As(err, &list) {
		return badf("fault", "%v", err)
	}
	msgs := make([]string, 0, len(list))
	for _, e := range list {
		msgs = append(msgs, fmt.Sprintf("%s: %s", strings.Replace(e.Path, "experiments[0].faults[0]", "fault", 1), e.Message))
	}
	return badf("fault", "%s", strings.Join(msgs, "; "))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
