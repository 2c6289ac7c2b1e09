package main

import (
	"runtime"
	"slices"
	"testing"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
)

// Every fault kind a runbook can name has an injector in the shipped build, and the build has no
// injector for a kind runbooks cannot name.
func TestEveryFaultKindHasAnInjector(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the network and proxy kinds are Linux-only")
	}
	reg, err := registry()
	if err != nil {
		t.Fatal(err)
	}
	_, kinds := runbooks.FaultKinds()
	if len(kinds) == 0 {
		t.Fatal("runbooks.FaultKinds() is empty")
	}
	for _, k := range kinds {
		if _, err := reg.Get(k); err != nil {
			t.Errorf("fault kind %q has no registered injector: %v", k, err)
		}
	}
	for _, k := range reg.Kinds() {
		if !slices.Contains(kinds, k) && k != injectors.AgentKind { // on: names the agent kind
			t.Errorf("injector for %q, which no runbook can name", k)
		}
	}
}
