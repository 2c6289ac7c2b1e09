package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/safety/ledger"
)

// runState is what a running `faultline run` leaves in <state-dir>/runs so that `faultline halt`
// can find and signal it.
type runState struct {
	RunID     string       `json:"runId"`
	Runbook   string       `json:"runbook"`
	File      string       `json:"file"`
	Owner     ledger.Owner `json:"owner"`
	StartedAt time.Time    `json:"startedAt"`
}

// haltRequest is written by `faultline halt` next to the run's state file.
type haltRequest struct {
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

func runsDir(stateDir string) string { return filepath.Join(stateDir, "runs") }

func ledgerPath(stateDir string) string { return filepath.Join(stateDir, "ledger.db") }

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func registerRun(stateDir string, st runState) (func(), error) {
	dir := runsDir(stateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, st.RunID+".json")
	if err := writeJSONFile(path, st); err != nil {
		return nil, fmt.Errorf("write run state: %w", err)
	}
	return func() {
		_ = os.Remove(path)
		_ = os.Remove(filepath.Join(dir, st.RunID+".halt"))
	}, nil
}

// activeRuns lists registered runs whose process is still alive; stale files of crashed runs
// are removed on the way.
func activeRuns(stateDir string) ([]runState, error) {
	dir := runsDir(stateDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var out []runState
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var st runState
		if json.Unmarshal(b, &st) != nil {
			continue
		}
		if !st.Owner.Alive() {
			_ = os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		out = append(out, st)
	}
	return out, nil
}

func readHalt(stateDir, runID string) (haltRequest, bool) {
	b, err := os.ReadFile(filepath.Join(runsDir(stateDir), runID+".halt"))
	if err != nil {
		return haltRequest{}, false
	}
	var h haltRequest
	return h, json.Unmarshal(b, &h) == nil
}
