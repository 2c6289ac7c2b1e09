package safety

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
)

// HostAllowed refuses a runbook whose environment names hosts when this machine is not one of
// them: a runbook written for the golden-copy box must not run on a laptop that shares its config.
func HostAllowed(_ context.Context, rb *runbooks.Runbook) error {
	hosts := rb.Environment.Hosts
	if len(hosts) == 0 {
		return nil
	}
	name, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("read host name: %w", err)
	}
	for _, h := range hosts {
		if ok, _ := filepath.Match(h, name); ok {
			return nil
		}
	}
	return injectors.Refusef("environment.hosts", "this host %q is not one of the environment's hosts (%s)", name, strings.Join(hosts, ", "))
}
