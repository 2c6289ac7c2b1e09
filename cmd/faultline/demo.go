package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/runbooks"
)

//go:embed demo.runbook.yaml
var demoRunbook string

func (m *Main) demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a complete game day on this machine: no cluster, no root, no Prometheus",
		Description: `Starts a small "checkout" HTTP service and a background worker as child processes, then
runs an embedded runbook against them with the same engine as 'faultline run':

  1. freeze-worker    pauses the worker; checkout's SLO guardrail holds    -> passed
  2. freeze-checkout  pauses checkout itself; the guardrail trips, faultline
                      halts and resumes it at once, then checks recovery    -> halted

The demo exits 0 when both experiments ended as designed. Faults are recorded in the
ledger under --state-dir like any run, so 'faultline recover' works if the demo is killed.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "print-runbook", Usage: "print the embedded runbook and exit"},
			&cli.DurationFlag{Name: "worker-duration", Value: 3 * time.Second, Usage: "how long the worker stays frozen"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"},
		},
		Action: m.demo,
	}
}

// demoServiceCommand is the demo's child process: hidden, not for users.
func (m *Main) demoServiceCommand() *cli.Command {
	return &cli.Command{
		Name:   "demo-service",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Required: true},
			&cli.StringFlag{Name: "addr-file"},
		},
		Action: func(c *cli.Context) error {
			if c.String("role") != "checkout" {
				<-c.Context.Done() // the worker has nothing to serve; it only has to exist
				return nil
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			if err := os.WriteFile(c.String("addr-file"), []byte(ln.Addr().String()), 0o600); err != nil {
				return err
			}
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "checkout ok\n")
			})}
			go func() { <-c.Context.Done(); _ = srv.Close() }()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
}

type demoVars struct {
	CheckoutURL, CheckoutPid, WorkerPid, WorkerDuration string
}

func renderDemo(v demoVars) ([]byte, error) {
	tpl, err := template.New("demo").Parse(demoRunbook)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := tpl.Execute(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (m *Main) demo(c *cli.Context) error {
	if c.Bool("print-runbook") {
		_, err := io.WriteString(m.Stdout, demoRunbook)
		return err
	}
	output := c.String("output")
	if output != "text" && output != "json" {
		return exitWith(exitInvalid, fmt.Errorf("--output must be text or json, got %q", output))
	}
	log, err := m.logger(c)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "faultline-demo-")
	if err != nil {
		return exitWith(exitAborted, err)
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return exitWith(exitAborted, err)
	}
	ctx, cancel := context.WithCancelCause(c.Context)
	defer cancel(nil)

	start := func(role string) (string, error) {
		cmd := exec.CommandContext(ctx, self, "demo-service", "--role", role, "--addr-file", filepath.Join(dir, role+".addr"))
		// The children die with the demo, even if the demo is SIGKILLed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return "", fmt.Errorf("start demo %s: %w", role, err)
		}
		go func() { _ = cmd.Wait() }()
		pidFile := filepath.Join(dir, role+".pid")
		return pidFile, os.WriteFile(pidFile, []byte(fmt.Sprint(cmd.Process.Pid)), 0o600)
	}
	workerPid, err := start("worker")
	if err != nil {
		return exitWith(exitAborted, err)
	}
	checkoutPid, err := start("checkout")
	if err != nil {
		return exitWith(exitAborted, err)
	}
	addr, err := waitForFile(ctx, filepath.Join(dir, "checkout.addr"), 10*time.Second)
	if err != nil {
		return exitWith(exitAborted, fmt.Errorf("demo checkout service did not start: %w", err))
	}
	text, err := renderDemo(demoVars{CheckoutURL: "http://" + addr + "/", CheckoutPid: checkoutPid, WorkerPid: workerPid,
		WorkerDuration: c.Duration("worker-duration").String()})
	if err != nil {
		return exitWith(exitAborted, err)
	}
	rb, err := runbooks.Parse("demo.runbook.yaml", text)
	if err != nil {
		return exitWith(exitAborted, fmt.Errorf("embedded demo runbook: %w", err))
	}

	eng, _, err := m.engine(c.String("state-dir"), log)
	if err != nil {
		return err
	}
	stop := m.haltOnSignals(ctx, cancel, c.String("state-dir"), "demo")
	defer stop()
	var ui *statusLine
	if output == "text" {
		fmt.Fprintf(m.Stdout, "faultline demo: checkout on http://%s, worker and checkout are real processes\n", addr)
		fmt.Fprintln(m.Stdout, "running 2 experiments (about 15 s); the runbook: faultline demo --print-runbook")
		if ui = newStatusLine(m.Stderr); ui != nil {
			eng.Progress = ui.update
		}
	}
	res := eng.Run(ctx, rb, experiments.RunOptions{})
	if ui != nil {
		ui.done() // before the summary, which would otherwise start on the status line
	}
	if output == "json" {
		if err := printJSON(m.Stdout, res); err != nil {
			return exitWith(exitAborted, err)
		}
	} else {
		printResult(m.Stdout, res)
	}
	asDesigned := len(res.Experiments) == 2 &&
		res.Experiments[0].Verdict == experiments.Passed &&
		res.Experiments[1].Verdict == experiments.Halted &&
		res.Experiments[1].Recovery != nil && res.Experiments[1].Recovery.Recovered
	if !asDesigned {
		return exitWith(verdictExit(res.Verdict), fmt.Errorf("the demo did not go as designed: %s", res.Reason))
	}
	if output == "text" {
		fmt.Fprintln(m.Stdout, strings.TrimSpace(`
The demo went as designed: freezing the worker left checkout healthy (passed); freezing
checkout tripped its SLO guardrail, so faultline halted the experiment and resumed the
process (exit code 2 for a real 'faultline run'), and checkout recovered within 5 s.
Next: faultline demo --print-runbook, then write your own and 'faultline validate' it.`))
	}
	return nil
}

func waitForFile(ctx context.Context, path string, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
	}
}
