// Package schedule decides when the faultline daemon starts experiments: cron or
// Chaos-Monkey-style random starts, limited to time windows, kept out of blackouts,
// capped per day and serialised per target. It is pure logic over an injected Clock,
// so "faultline schedule --next" and the daemon compute the same starts.
package schedule

import (
	"errors"
	"fmt"
	"strings"
)

// Schedule is one entry of the daemon's configuration. Exactly one of Cron or
// ChaosMonkey is set.
type Schedule struct {
	Name    string `yaml:"name" json:"name"`
	Runbook string `yaml:"runbook" json:"runbook"`
	// Cron has five fields (minute hour day-of-month month day-of-week), a
	// descriptor (@hourly, @daily, @every 2h) and an optional CRON_TZ= prefix.
	Cron string `yaml:"cron,omitempty" json:"cron,omitempty"`
	// TimeZone is an IANA name; it governs cron fields, date-only blackouts,
	// windows without their own zone and the per-day cap. Empty means UTC.
	TimeZone    string       `yaml:"timeZone,omitempty" json:"timeZone,omitempty"`
	Windows     []Window     `yaml:"windows,omitempty" json:"windows,omitempty"`
	Blackouts   []Blackout   `yaml:"blackouts,omitempty" json:"blackouts,omitempty"`
	ChaosMonkey *ChaosMonkey `yaml:"chaosMonkey,omitempty" json:"chaosMonkey,omitempty"`
	// Concurrency is ConcurrencyForbid (default) or ConcurrencyQueue.
	Concurrency string `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// Target keys the concurrency gate; schedules sharing a target never overlap.
	// Empty means Runbook.
	Target string `yaml:"target,omitempty" json:"target,omitempty"`
	// MaxRunsPerDay caps starts per calendar day in TimeZone; 0 means no cap.
	MaxRunsPerDay int `yaml:"maxRunsPerDay,omitempty" json:"maxRunsPerDay,omitempty"`
}

// Window permits starts on Days between Start and End wall-clock time. When End
// is not after Start the window crosses midnight, and Days names the day it opens.
type Window struct {
	Days     []string `yaml:"days,omitempty" json:"days,omitempty"`
	Start    string   `yaml:"start" json:"start"`
	End      string   `yaml:"end" json:"end"`
	TimeZone string   `yaml:"timeZone,omitempty" json:"timeZone,omitempty"`
}

// Blackout forbids starts from From until To. A date-only bound means the whole
// day in the schedule's zone, so From and To may name the same day.
type Blackout struct {
	Name   string `yaml:"name,omitempty" json:"name,omitempty"`
	From   string `yaml:"from" json:"from"`
	To     string `yaml:"to" json:"to"`
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// ChaosMonkey starts runs at random, like Netflix Chaos Monkey and kube-monkey.
// Both durations count only permitted time (inside windows, outside blackouts),
// so a 4h mean with 9-to-5 windows means about two runs per working day.
type ChaosMonkey struct {
	MeanTimeBetweenRuns string `yaml:"meanTimeBetweenRuns" json:"meanTimeBetweenRuns"`
	MinGap              string `yaml:"minGap,omitempty" json:"minGap,omitempty"`
}

// Concurrency policies.
const (
	ConcurrencyForbid = "forbid"
	ConcurrencyQueue  = "queue"
)

var (
	// ErrNoStart means no permitted start exists within the search horizon.
	ErrNoStart = errors.New("no permitted start within 366 days")
	// ErrSkipped is returned (wrapped) by a start function that decided not to
	// run, e.g. because the target is busy; Loop does not count it against the cap.
	ErrSkipped = errors.New("start skipped")
)

// Problem is one invalid field; Field is the YAML path inside the schedule.
type Problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Field + ": " + p.Message }

// ValidationError lists every problem Compile found, so a user fixes them in one pass.
type ValidationError struct {
	Schedule string    `json:"schedule"`
	Problems []Problem `json:"problems"`
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Schedule != "" {
		fmt.Fprintf(&b, "schedule %q is invalid:", e.Schedule)
	} else {
		b.WriteString("schedule is invalid:")
	}
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}
