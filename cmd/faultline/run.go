package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/metrics"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/ledger"
	"github.com/faultline-dev/faultline/safety/policy"
)

func (m *Main) runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a runbook: check the steady state, inject, watch the guardrails, revert, judge",
		ArgsUsage: "RUNBOOK",
		Description: `Runs the experiments of RUNBOOK in order. Before each one every guardrail must hold (else
nothing is injected, exit 3). Each fault is written to the ledger, then applied. Guardrails
are evaluated continuously; the first breach halts the run and reverts every fault in
parallel (exit 2). SIGINT, SIGTERM and 'faultline halt' do the same. After the faults are
reverted the guardrails must hold again within the recovery window, else the experiment
fails (exit 1).

--dry-run resolves every target against the live system and prints exactly what would be
touched, without touching it.

Pods and processes a fault does not take all of are picked at random, from a seed: --seed N
makes the pick repeatable, so that a dry run and a run with the same seed touch the same
targets (as long as the candidates are the same). Without --seed the run draws a seed; the
dry run prints it, and the result document records it ("seed").

--report FORMAT=FILE (repeatable) also writes a report: html (one offline page with the
timeline), junit (for CI test reporters) or markdown; with $GITHUB_STEP_SUMMARY set, the
Markdown summary is appended there. --baseline PREVIOUS.json compares every recovery figure
with an earlier run's; a figure worse than its tolerance fails the run (exit 1).

` + exitCodesHelp,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be touched, touch nothing"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text (a summary for people) or json (the result document)"},
			&cli.StringFlag{Name: "result-file", Usage: "also write the JSON result document to this file"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve faultline's Prometheus metrics on this address during the run, e.g. 127.0.0.1:9464"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed for the random pick of pods and processes: the same seed picks the same targets again", DefaultText: "a random seed, recorded in the result"},
			&cli.StringFlag{Name: "run-id", Usage: "use this run ID instead of a random one: 1 to 12 lowercase letters and digits; it names the ledger entries and the FAULTLINE-* chains, so a CI job can find them"},
		}, append(reportFlags(), kubeFlags()...)...),
		Action: m.run,
	}
}

func (m *Main) run(c *cli.Context) error {
	if c.NArg() != 1 {
		return exitWith(exitInvalid, errors.New("run needs exactly one runbook file"))
	}
	output := c.String("output")
	if output != "text" && output != "json" {
		return exitWith(exitInvalid, fmt.Errorf("--output must be text or json, got %q", output))
	}
	runID := c.String("run-id")
	if runID != "" && !validRunID(runID) {
		return exitWith(exitInvalid, fmt.Errorf("--run-id %q: use 1 to 12 lowercase letters and digits", runID))
	}
	log, err := m.logger(c)
	if err != nil {
		return err
	}
	file := c.Args().First()
	if runID == "" {
		runID = experiments.NewRunID()
	}
	rb, err := runbooks.Load(file)
	if err != nil {
		fmt.Fprintln(m.Stderr, err)
		// A CI step that pipes -o json into jq, or reads --result-file, gets a document either way.
		if werr := m.emitResult(c, output, invalidResult(runID, file, err)); werr != nil {
			return werr
		}
		return exitWith(exitInvalid, fmt.Errorf("%s is not a valid runbook", file))
	}
	reports, err := prepareReports(c, rb)
	if err != nil {
		return err
	}

	stateDir := c.String("state-dir")
	var eng *experiments.Engine
	var met *metrics.Metrics
	if c.Bool("dry-run") {
		eng, met, err = m.dryRunEngine(stateDir, log)
	} else {
		eng, met, err = m.engine(stateDir, log)
	}
	if err != nil {
		return err
	}
	withKube(eng, kubeClient(c))
	if addr := c.String("metrics-addr"); addr != "" {
		stop, err := serveMetrics(c.Context, addr, met, log)
		if err != nil {
			return exitWith(exitInvalid, err)
		}
		defer stop()
	}

	ctx, cancel := context.WithCancelCause(c.Context)
	defer cancel(nil)
	if !c.Bool("dry-run") {
		unregister, err := registerRun(stateDir, runState{RunID: runID, Runbook: rb.Metadata.Name, File: file, Owner: ledger.Self(), StartedAt: time.Now()})
		if err != nil {
			return exitWith(exitAborted, err)
		}
		defer unregister()
		stopSignals := m.haltOnSignals(ctx, cancel, stateDir, runID)
		defer stopSignals()
		if h := holdHook(stateDir); h != nil {
			eng.Hook = h
		}
	}
	var ui *statusLine
	if output == "text" {
		if ui = newStatusLine(m.Stderr); ui != nil {
			eng.Progress = ui.update
		}
	}

	opts := experiments.RunOptions{RunID: runID, DryRun: c.Bool("dry-run")}
	if c.IsSet("seed") {
		s := c.Uint64("seed")
		opts.Seed = &s
	}
	res := eng.Run(ctx, rb, opts)
	if ui != nil {
		ui.done() // before the summary, which would otherwise start on the status line
	}
	reports.finish(m, res)

	if err := m.emitResult(c, output, res); err != nil {
		return err
	}
	if code := verdictExit(res.Verdict); code != 0 {
		return exitWith(code, nil)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

func validRunID(s string) bool {
	if len(s) == 0 || len(s) > 12 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// engine assembles the engine from what this build has compiled in.
func (m *Main) engine(stateDir string, log *slog.Logger) (*experiments.Engine, *metrics.Metrics, error) {
	reg, err := registry()
	if err != nil {
		return nil, nil, exitWith(exitAborted, err)
	}
	led, err := ledger.OpenFile(ledgerPath(stateDir))
	if err != nil {
		// No ledger, no faults: a fault that cannot be recorded could not be recovered after a crash.
		return nil, nil, exitWith(exitAborted, fmt.Errorf("%w; nothing was injected", err))
	}
	eng, met := newEngine(reg, led, log)
	return eng, met, nil
}

// dryRunEngine is engine without a ledger: a dry run creates no state directory and writes nothing.
func (m *Main) dryRunEngine(stateDir string, log *slog.Logger) (*experiments.Engine, *metrics.Metrics, error) {
	reg, err := registry()
	if err != nil {
		return nil, nil, exitWith(exitAborted, err)
	}
	eng, met := newEngine(reg, dryRunLedger{where: ledgerPath(stateDir)}, log)
	return eng, met, nil
}

// newEngine assembles an engine over a ledger (the file ledger for run and demo, the file or the
// cluster ledger for the daemon).
func newEngine(reg *injectors.Registry, led ledger.Ledger, log *slog.Logger) (*experiments.Engine, *metrics.Metrics) {
	met := metrics.New()
	pr, penv := probes(log)
	return &experiments.Engine{
		Injectors: reg,
		Probes:    pr,
		ProbeEnv:  penv,
		Ledger:    led,
		Logger:    log,
		Metrics:   met,
		Preflight: []experiments.Preflight{policy.HostAllowed},
		Recorders: []experiments.Recorder{&recorder.Workloads{}, &recorder.Autoscalers{}, &recorder.Breakers{Logger: log}},
		Version:   version,
	}, met
}

// haltOnSignals turns SIGINT/SIGTERM and `faultline halt` (SIGUSR1 + a request file) into a
// cancellation whose cause says who asked. A second SIGINT is ignored on purpose: the revert
// that the first one started must finish.
func (m *Main) haltOnSignals(ctx context.Context, cancel context.CancelCauseFunc, stateDir, runID string) func() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case s := <-ch:
				if s == syscall.SIGUSR1 {
					h, ok := readHalt(stateDir, runID)
					if !ok {
						continue // a stray SIGUSR1 without a request is not a halt
					}
					cancel(&experiments.HaltRequest{Source: "operator", Reason: fmt.Sprintf("%s (by %s)", h.Reason, h.By)})
					continue
				}
				fmt.Fprintf(m.Stderr, "\nfaultline: %s received: halting and reverting every fault\n", s)
				cancel(&experiments.HaltRequest{Source: "signal", Reason: s.String() + " received"})
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

func serveMetrics(ctx context.Context, addr string, met *metrics.Metrics, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(met.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}
