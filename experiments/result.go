package experiments

import (
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/load"
	"github.com/faultline-dev/faultline/safety/guardrail"
)

// Verdict is the outcome of an experiment or a whole run.
type Verdict string

// Verdicts, and the exit code each maps to. The order of severity is the order of precedence
// when a run's experiments disagree (see Worse).
const (
	Passed           Verdict = "passed"
	Failed           Verdict = "failed"
	Halted           Verdict = "halted"
	NotStarted       Verdict = "not-started"
	Refused          Verdict = "refused"
	Aborted          Verdict = "aborted"
	RevertIncomplete Verdict = "revert-incomplete"
	DryRun           Verdict = "dry-run"
	// Invalid is a runbook that did not load or validate; nothing was resolved or touched.
	Invalid Verdict = "invalid"
)

// ExitCode is the process exit code for a verdict; documented in the README and --help.
func (v Verdict) ExitCode() int {
	switch v {
	case Passed, DryRun:
		return 0
	case Failed:
		return 1
	case Halted:
		return 2
	case NotStarted:
		return 3
	case Refused, Invalid:
		return 4
	case Aborted:
		return 5
	case RevertIncomplete:
		return 6
	}
	return 5
}

func severity(v Verdict) int {
	switch v {
	case RevertIncomplete:
		return 7
	case Aborted:
		return 6
	case Refused, Invalid:
		return 5
	case Halted:
		return 4
	case NotStarted:
		return 3
	case Failed:
		return 2
	}
	return 0
}

// Worse returns the more severe of two verdicts.
func Worse(a, b Verdict) Verdict {
	if severity(b) > severity(a) {
		return b
	}
	return a
}

// Result is the document `faultline run --output json` prints and the daemon stores.
type Result struct {
	// SchemaVersion is the version of this document's format (ResultSchemaVersion when written);
	// absent in documents written before it was introduced, which read as version 1.
	SchemaVersion int `json:"schemaVersion,omitempty"`
	// FaultlineVersion is the version of the faultline that wrote the document.
	FaultlineVersion string `json:"faultlineVersion,omitempty"`
	// RunbookDigest identifies the runbook's content (runbooks.Digest), so that a baseline
	// comparison can tell that the runbook changed between two runs.
	RunbookDigest string `json:"runbookDigest,omitempty"`
	// Identity says where the run ran (the host, the cluster the golden-copy guard verified).
	Identity *EnvironmentIdentity `json:"environmentIdentity,omitempty"`
	// ExperimentNames lists the runbook's experiments in order, those not reached included, so
	// that a report can show what a halt skipped.
	ExperimentNames []string `json:"experimentNames,omitempty"`

	RunID       string             `json:"runId"`
	Runbook     string             `json:"runbook"`
	Environment string             `json:"environment"`
	Verdict     Verdict            `json:"verdict"`
	ExitCode    int                `json:"exitCode"`
	Reason      string             `json:"reason,omitempty"`
	StartedAt   time.Time          `json:"startedAt"`
	EndedAt     time.Time          `json:"endedAt"`
	Halt        *Halt              `json:"halt,omitempty"`
	Experiments []ExperimentResult `json:"experiments"`
	// Load is the runbook's load (load:), with its per-second series.
	Load *load.Summary `json:"load,omitempty"`
	// Plan is set by --dry-run: exactly what would be touched, resolved against the live system now.
	Plan []PlannedExperiment `json:"plan,omitempty"`
	// Baseline is this run compared with a baseline run (--baseline); a regression fails the run.
	Baseline *BaselineComparison `json:"baseline,omitempty"`
}

// Halt says why and when a run was halted.
type Halt struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	// Source is "guardrail", "signal", "operator" (faultline halt / API) or "window".
	Source    string   `json:"source"`
	Guardrail string   `json:"guardrail,omitempty"`
	Value     *float64 `json:"value,omitempty"`
	Detail    string   `json:"detail,omitempty"`
	// LastRevertedAt is when the last fault was reverted after the halt; with At it gives halt latency.
	LastRevertedAt *time.Time `json:"lastRevertedAt,omitempty"`
}

// ExperimentResult is one experiment's part of the result.
type ExperimentResult struct {
	Name       string            `json:"name"`
	Verdict    Verdict           `json:"verdict"`
	Reason     string            `json:"reason,omitempty"`
	StartedAt  time.Time         `json:"startedAt"`
	EndedAt    time.Time         `json:"endedAt"`
	Faults     []FaultResult     `json:"faults"`
	Guardrails []GuardrailResult `json:"guardrails,omitempty"`
	Hypothesis []GuardrailResult `json:"hypothesis,omitempty"`
	Recovery   *RecoveryResult   `json:"recovery,omitempty"`
	Recordings []Recording       `json:"recordings,omitempty"`
	// Load is the experiment's own load, or its span of the runbook's.
	Load *load.Summary `json:"load,omitempty"`
	// Objectives are the runbook's recovery objectives judged against the recordings' figures
	// (and the engine's own, such as time to detect); a failed one fails the experiment.
	Objectives []ObjectiveResult `json:"objectives,omitempty"`
	// Figures are the engine's own recovery figures (time to detect, error budget burned).
	Figures []Figure `json:"figures,omitempty"`
}

// FaultResult records one fault's life.
type FaultResult struct {
	Name     string   `json:"name"`
	Kind     string   `json:"kind"`
	LedgerID string   `json:"ledgerId,omitempty"`
	Targets  []string `json:"targets"`
	// Mechanism is how the injector chose to inject (injectors.MechanismReporter); empty for
	// kinds that have only one way.
	Mechanism  string     `json:"mechanism,omitempty"`
	Applied    []string   `json:"applied,omitempty"`
	RecordedAt *time.Time `json:"recordedAt,omitempty"`
	AppliedAt  *time.Time `json:"appliedAt,omitempty"`
	// RevertedAt is when this fault's own revert finished, not the experiment's last; unset when
	// the revert failed.
	RevertedAt *time.Time        `json:"revertedAt,omitempty"`
	Events     []injectors.Event `json:"events,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// GuardrailResult holds a guardrail's observations by phase.
type GuardrailResult struct {
	Name         string         `json:"name"`
	Kind         string         `json:"kind"`
	Describe     string         `json:"describe"`
	Breached     bool           `json:"breached"`
	Blind        bool           `json:"blind,omitempty"` // some evaluations could not see the source
	Observations []PhasedSample `json:"observations"`
	Truncated    int            `json:"truncated,omitempty"`

	// Threshold is the limit the check compares each value with, for probes that have one
	// (guardrail.Limiter); ThresholdOp is the comparison that passes ("<=", ">", ...).
	Threshold   *float64 `json:"threshold,omitempty"`
	ThresholdOp string   `json:"thresholdOp,omitempty"`
}

// PhasedSample is an observation with the lifecycle phase it was made in.
type PhasedSample struct {
	Phase string `json:"phase"` // steady-state, during, after
	guardrail.Observation
}

// RecoveryResult is the outcome of the after phase.
type RecoveryResult struct {
	Within    string     `json:"within"`
	Recovered bool       `json:"recovered"`
	HealthyAt *time.Time `json:"healthyAt,omitempty"`
	// TimeToRecover is from the last revert to all guardrails healthy again.
	TimeToRecover string `json:"timeToRecover,omitempty"`
}
