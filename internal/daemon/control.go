// Package daemon is `faultline daemon`: schedules from a config file, leader election, a ledger
// that survives the leader, the HTTP API and history.
package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// Control is what the HTTP API drives. The daemon implements it; the API package only sees this.
type Control interface {
	// Schedules lists the configured schedules with their next start times.
	Schedules() []ScheduleStatus
	// Active lists runs in progress.
	Active() []RunSummary
	// Trigger starts a run of a configured runbook now (by schedule name or runbook path), outside
	// the schedule but inside the same policy: a blackout or a paused daemon refuses it.
	Trigger(ctx context.Context, runbook, who string) (runID string, err error)
	// Halt halts one running run; every fault of it is reverted before it returns. A standby
	// hands it to the leader and waits for its answer.
	Halt(ctx context.Context, runID, reason, who string) error
	// HaltAll is the kill switch: halt every running run in the cluster. It returns the runs
	// halted once their faults are reverted.
	HaltAll(ctx context.Context, reason, who string) ([]string, error)
	// Pause stops scheduling (running runs continue unless halted); Resume starts it again.
	// With several replicas the switch lives in the cluster and survives failover.
	Pause(ctx context.Context, who string) error
	Resume(ctx context.Context, who string) error
	Paused() bool
	// Leader reports whether this replica is the one that schedules; LeaderIdentity names the
	// one that does, as far as this replica knows (empty when unknown).
	Leader() bool
	LeaderIdentity() string
	// Recovery is empty, or says why orphaned faults are not reverted yet (then nothing is
	// scheduled and the replica is not ready).
	Recovery() string
	// Ready reports whether startup recovery has finished (the ledger is clean or owned).
	Ready() bool
	// Reload reads the config file and its runbooks again and puts the new schedules in force
	// between runs; a config that does not validate is refused (ErrInvalid) and changes nothing.
	Reload(ctx context.Context, who string) (ReloadResult, error)
}

// ScheduleStatus is a schedule as the API shows it.
type ScheduleStatus struct {
	Name      string     `json:"name"`
	Runbook   string     `json:"runbook"`
	Mode      string     `json:"mode"` // cron or chaos-monkey
	Spec      string     `json:"spec"` // the cron expression or the mean time between runs
	NextStart *time.Time `json:"nextStart,omitempty"`
	InWindow  bool       `json:"inWindow"`
	Blackout  string     `json:"blackout,omitempty"`
	RunsToday int        `json:"runsToday"`
}

// RunSummary is a run as lists show it; the full result document is in history.
type RunSummary struct {
	RunID     string              `json:"runId"`
	Schedule  string              `json:"schedule,omitempty"`
	Runbook   string              `json:"runbook"`
	Trigger   string              `json:"trigger"` // schedule, api
	StartedAt time.Time           `json:"startedAt"`
	EndedAt   *time.Time          `json:"endedAt,omitempty"`
	Verdict   experiments.Verdict `json:"verdict,omitempty"`
	ExitCode  int                 `json:"exitCode"`
	Reason    string              `json:"reason,omitempty"`
	// Replica is the identity of the replica that ran it.
	Replica string `json:"replica,omitempty"`
}

// Errors the API maps to status codes.
var (
	ErrNotFound  = errors.New("not found")           // 404
	ErrConflict  = errors.New("conflict")            // 409: blackout, paused, forbid-concurrency, not leader
	ErrForbidden = errors.New("forbidden by policy") // 403
)
