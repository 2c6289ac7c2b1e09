package api

import (
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/daemon"
)

// The request and response documents of the API; the CLI decodes the same types.

// StatusResponse is GET /api/v1/status.
type StatusResponse struct {
	Now    time.Time `json:"now"`
	Leader bool      `json:"leader"`
	// LeaderIdentity names the replica that schedules (this one, or the Lease holder).
	LeaderIdentity string `json:"leaderIdentity,omitempty"`
	// Recovery says why orphaned faults are not reverted yet; nothing is scheduled meanwhile.
	Recovery  string                  `json:"recovery,omitempty"`
	Paused    bool                    `json:"paused"`
	Ready     bool                    `json:"ready"`
	Schedules []daemon.ScheduleStatus `json:"schedules"`
	Active    []daemon.RunSummary     `json:"active"`
	// Unstored lists run records history refused; the daemon keeps them and retries.
	Unstored []daemon.UnstoredRun `json:"unstored,omitempty"`
}

// SchedulesResponse is GET /api/v1/schedules.
type SchedulesResponse struct {
	Schedules []daemon.ScheduleStatus `json:"schedules"`
}

// RunsResponse is GET /api/v1/runs: runs in progress, then finished runs newest first.
type RunsResponse struct {
	Active   []daemon.RunSummary `json:"active"`
	Finished []daemon.RunSummary `json:"finished"`
}

// Run states in RunResponse.
const (
	RunRunning  = "running"
	RunFinished = "finished"
)

// RunResponse is GET /api/v1/runs/{id}: the live summary while the run is in progress, the
// summary and the full result document once it has finished.
type RunResponse struct {
	State   string              `json:"state"`
	Summary daemon.RunSummary   `json:"summary"`
	Result  *experiments.Result `json:"result,omitempty"`
	// StoreError says why a finished run's result is not in history (it is served from memory).
	StoreError string `json:"storeError,omitempty"`
}

// TriggerRequest is the body of POST /api/v1/runs.
type TriggerRequest struct {
	// Runbook is a configured schedule's name or a runbook path the daemon knows.
	Runbook string `json:"runbook"`
}

// TriggerResponse is the 202 answer to POST /api/v1/runs; Location is also a header.
type TriggerResponse struct {
	RunID    string `json:"runId"`
	Location string `json:"location"`
}

// ReasonRequest is the (optional) body of the halt, pause and resume calls.
type ReasonRequest struct {
	Reason string `json:"reason,omitempty"`
}

// HaltResponse is the 200 answer to the halt calls: the runs halted. The daemon answers once
// every fault of them is reverted and their results are stored (GET /api/v1/runs/{id}).
type HaltResponse struct {
	Halted []string `json:"halted"`
}

// PauseResponse is the answer to pause and resume.
type PauseResponse struct {
	Paused bool `json:"paused"`
}

// ReadyResponse is GET /readyz (200 when ready, else 503).
type ReadyResponse struct {
	Ready bool `json:"ready"`
}

// ErrorResponse is the body of every error.
type ErrorResponse struct {
	Error string `json:"error"`
}
