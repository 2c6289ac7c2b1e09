// Package policy owns the refusals made before anything is touched: the host and golden-copy
// guards, the Kubernetes namespace, opt-in and blast-radius rules, and RefusedError, the one error
// type every injector returns for a refusal (exit code 4). Injectors depend on this package and
// on nothing else of safety.
package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/faultline-dev/faultline/runbooks"
)

// HostAllowed refuses a runbook whose environment names hosts when this machine is not one of
// them: a runbook written for the golden-copy box must not run on a laptop that shares its config.
// A fault sent to other hosts' agents (on:) acts there, not here: those hosts' names must match
// instead, and this machine only when some fault acts from it.
func HostAllowed(_ context.Context, rb *runbooks.Runbook) error {
	hosts := rb.Environment.Hosts
	if len(hosts) == 0 {
		return nil
	}
	match := func(name string) bool {
		for _, h := range hosts {
			if ok, _ := filepath.Match(h, name); ok {
				return true
			}
		}
		return false
	}
	for _, name := range rb.RemoteHosts() {
		if !match(name) {
			return Refusef("environment.hosts", "host %q in on: is not one of the environment's hosts (%s)", name, strings.Join(hosts, ", "))
		}
	}
	if !rb.HasLocalFaults() {
		return nil
	}
	name, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("read host name: %w", err)
	}
	if !match(name) {
		return Refusef("environment.hosts", "this host %q is not one of the environment's hosts (%s)", name, strings.Join(hosts, ", "))
	}
	return nil
}
