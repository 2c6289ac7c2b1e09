//go:build faultline_testhooks

package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// holdHook supports the crash-safety tests: with FAULTLINE_TEST_HOLD_AT=<point>, the run stops
// at that point of the inject path, writes <state-dir>/held-<point> and waits to be killed.
// It is inert unless that variable is set.
func holdHook(stateDir string) func(string) {
	point := os.Getenv("FAULTLINE_TEST_HOLD_AT")
	if point == "" {
		return nil
	}
	return func(p string) {
		if p != point {
			return
		}
		_ = os.WriteFile(filepath.Join(stateDir, "held-"+p), []byte(fmt.Sprint(os.Getpid())), 0o600)
		select {} // wait for SIGKILL: this is the crash under test
	}
}
