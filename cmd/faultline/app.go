package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/experiments"
)

// Exit codes, shared by every command that runs or checks experiments.
const (
	exitPassed           = 0
	exitFailed           = 1
	exitHalted           = 2
	exitNotStarted       = 3
	exitInvalid          = 4
	exitAborted          = 5
	exitRevertIncomplete = 6
)

const exitCodesHelp = `EXIT CODES:
   0  passed             every experiment held its hypothesis and recovered
   1  failed             a hypothesis or recovery objective was not met (faults were reverted)
   2  halted             a guardrail tripped, or a halt was requested; all faults were reverted
   3  not started        the steady state did not hold; nothing was injected
   4  invalid / refused  bad runbook, flags or a policy refusal; nothing was injected
   5  aborted            an error stopped the run; everything applied was reverted
   6  revert incomplete  faults may remain; the ledger lists them: run 'faultline recover'`

// Main is the command-line program; tests drive it in-process or through the built binary.
type Main struct {
	Stdout, Stderr io.Writer
}

// NewMain returns a Main writing to the given streams.
func NewMain(stdout, stderr io.Writer) *Main { return &Main{Stdout: stdout, Stderr: stderr} }

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// Run parses args and runs one command, returning the process exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	app := m.app()
	if err := unknownCommand(app, args); err != nil {
		fmt.Fprintln(m.Stderr, "faultline:", err)
		return exitInvalid
	}
	err := app.RunContext(ctx, normalizeArgs(app, args))
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(m.Stderr, "faultline:", ee.err)
		}
		return ee.code
	}
	// Anything urfave/cli reports itself (unknown flag, missing argument) is a usage error.
	fmt.Fprintln(m.Stderr, "faultline:", err)
	return exitInvalid
}

func (m *Main) app() *cli.App {
	app := m.appTree()
	hideLeafHelpCommands(app.Commands)
	return app
}

// hideLeafHelpCommands keeps `help` out of the COMMANDS list of commands that have none.
func hideLeafHelpCommands(cmds []*cli.Command) {
	for _, c := range cmds {
		if len(c.Subcommands) == 0 {
			c.HideHelpCommand = true
		}
		hideLeafHelpCommands(c.Subcommands)
	}
}

func (m *Main) appTree() *cli.App {
	return &cli.App{
		Name:  "faultline",
		Usage: "chaos experiments with SLO guardrails, for staging and golden-copy environments",
		Description: `faultline injects faults (process kills and pauses, network partitions, loss, latency,
pod kills, shard outages), watches SLO guardrails before, during and after, halts and
reverts everything the moment one trips, and records how the system recovered.

Every fault is written to a durable ledger before it is applied. If faultline is killed,
'faultline recover' undoes whatever is left.

Start with:  faultline validate runbooks/examples/process-pause.yaml
             faultline run --dry-run runbooks/examples/process-pause.yaml

` + exitCodesHelp,
		Writer:                 m.Stdout,
		ErrWriter:              m.Stderr,
		HideVersion:            true,
		UseShortOptionHandling: true,
		ExitErrHandler:         func(*cli.Context, error) {}, // Run maps errors to exit codes
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "state-dir", EnvVars: []string{"FAULTLINE_STATE_DIR"}, Value: defaultStateDir(),
				Usage: "where the fault ledger and run state live (shared by run, recover and halt)"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json (logs go to stderr)"},
		}, kubeFlags()...),
		Commands: []*cli.Command{
			m.runCommand(),
			m.validateCommand(),
			m.recoverCommand(),
			m.haltCommand(),
			m.statusCommand(),
			m.historyCommand(),
			m.triggerCommand(),
			m.clusterIDCommand(),
			m.versionCommand(),
			m.demoCommand(),
			m.scheduleCommand(),
			m.daemonCommand(),
			m.proxyCommand(),
			m.reportCommand(),
			m.compareCommand(),
			m.completionCommand(),
			m.demoSampleCommand(),
			m.demoSystemCommand(),
			m.agentCommand(),
			m.agentsCommand(),
		},
	}
}

// defaultStateDir follows the XDG base directory spec: state belongs in $XDG_STATE_HOME.
func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "faultline")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "faultline")
	}
	return filepath.Join(os.TempDir(), "faultline")
}

func (m *Main) logger(c *cli.Context) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, exitWith(exitInvalid, fmt.Errorf("--log-level: %w", err))
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(c.String("log-format")) {
	case "text":
		return slog.New(slog.NewTextHandler(m.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(m.Stderr, opts)), nil
	}
	return nil, exitWith(exitInvalid, fmt.Errorf("--log-format must be text or json, got %q", c.String("log-format")))
}

func verdictExit(v experiments.Verdict) int { return v.ExitCode() }
