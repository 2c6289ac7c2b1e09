package main

import (
	"os/exec"
	"strings"
	"testing"
)

// testHooksTag builds the test binary with the crash-safety hold hook (FAULTLINE_TEST_HOLD_AT).
const testHooksTag = "faultline_testhooks"

// The shipped build (no tags) does not compile the hook in.
func TestHoldHookIsNotInTheShippedBuild(t *testing.T) {
	for tags, want := range map[string]bool{"": false, testHooksTag: true} {
		out, err := exec.Command("go", "list", "-tags", tags, "-f", "{{join .GoFiles \" \"}}", ".").Output()
		if err != nil {
			t.Fatalf("go list -tags %q: %v", tags, err)
		}
		if got := strings.Contains(string(out), "holdhook_testhooks.go"); got != want {
			t.Errorf("go list -tags %q: hold hook compiled in = %v, want %v (files: %s)", tags, got, want, out)
		}
	}
}
