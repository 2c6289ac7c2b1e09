package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/template"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/internal/demo"
	"github.com/faultline-dev/faultline/report"
	"github.com/faultline-dev/faultline/runbooks"
)

//go:embed demo.runbook.yaml
var demoRunbook string

func (m *Main) demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a game day against a sample sharded service on this machine: no cluster, no root, no Prometheus",
		Description: `Starts a small sharded service as child processes of this binary: a gateway with one
circuit breaker per shard and an autoscaled worker pool, three shards behind faultline's own proxies,
and an embedded Prometheus scraping them every 250 ms. Then it runs an ordinary runbook against it,
with the same engine, recorders and reports as 'faultline run', under 60 requests/s of its own load:

  1. slow-shard-1      150 ms on shard 1: the autoscaler scales out and back    -> passed
  2. shard-2-out       shard 2 refuses connections: its breaker opens, the
                       gateway serves fallbacks, the breaker closes again        -> passed
  3. mild-latency-shard-3  40 ms on shard 3: no breaker opens for it         -> passed
  4. every-shard-slow  1.5 s on every shard: the client p95 guardrail trips,
                       faultline halts and reverts at once                      -> halted

It prints the recovery figures (autoscaler, breakers, client latency) and writes an HTML report.
The demo exits 0 when every experiment ended as designed. Everything it starts is stopped at the
end; faults are in the ledger under --state-dir like any run's.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "print-runbook", Usage: "print the runbook the demo runs (an ordinary runbook to copy) and exit"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"},
			&cli.StringFlag{Name: "report", Usage: "write the HTML report here (default: demo-report.html in --state-dir)"},
		},
		Action: m.demo,
	}
}

// demoVars are the addresses the runbook template is filled in with.
type demoVars struct {
	GatewayURL, ProxyServerURL, PrometheusURL string
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

// demoGatewayArgs make the sample system react within the demo's seconds: an HPA syncs every 15 s
// and waits 5 min before scaling in, which would make a demo of a quarter of an hour.
var demoGatewayArgs = []string{"--sync-period=500ms", "--scale-down-stabilization=4s", "--breaker-open-for=1s"}

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
	stateDir := c.String("state-dir")
	reportPath := c.String("report")
	if reportPath == "" {
		reportPath = filepath.Join(stateDir, "demo-report.html")
	}
	ctx, cancel := context.WithCancelCause(c.Context)
	defer cancel(nil)

	if output == "text" {
		fmt.Fprintln(m.Stdout, "faultline demo: starting a gateway, 3 shards, 3 proxies and an embedded Prometheus on 127.0.0.1 ...")
	}
	sys, err := demo.Start(ctx, demo.Options{GatewayArgs: demoGatewayArgs, Logger: log})
	if err != nil {
		return exitWith(exitAborted, fmt.Errorf("start the sample system: %w", err))
	}
	defer sys.Close()
	text, err := renderDemo(demoVars{GatewayURL: sys.GatewayURL, ProxyServerURL: sys.ProxyServerURL, PrometheusURL: sys.PrometheusURL})
	if err != nil {
		return exitWith(exitAborted, err)
	}
	rb, err := runbooks.Parse("demo.runbook.yaml", text)
	if err != nil {
		return exitWith(exitAborted, fmt.Errorf("embedded demo runbook: %w", err))
	}
	eng, _, err := m.engine(stateDir, log)
	if err != nil {
		return err
	}
	eng.Version = version
	stop := m.haltOnSignals(ctx, cancel, stateDir, "demo")
	defer stop()
	var ui *statusLine
	if output == "text" {
		fmt.Fprintf(m.Stdout, "gateway %s · proxies %s · prometheus %s\n", sys.GatewayURL, sys.ProxyServerURL, sys.PrometheusURL)
		fmt.Fprintln(m.Stdout, "running 4 experiments under load (about a minute); the runbook: faultline demo --print-runbook")
		if ui = newStatusLine(m.Stderr); ui != nil {
			eng.Progress = ui.update
			stopLive := demoLive(ctx, ui, sys.PrometheusURL)
			defer stopLive()
		}
	}
	res := eng.Run(ctx, rb, experiments.RunOptions{})
	if ui != nil {
		ui.done() // before the summary, which would otherwise start on the status line
	}
	var reportErr error
	if f, err := os.Create(reportPath); err != nil {
		reportErr = err
	} else {
		reportErr = errors.Join(report.HTML(f, res), f.Close())
	}
	if output == "json" {
		if err := printJSON(m.Stdout, res); err != nil {
			return exitWith(exitAborted, err)
		}
	} else {
		printResult(m.Stdout, res)
	}
	if reportErr != nil {
		return exitWith(exitAborted, fmt.Errorf("write the demo report: %w", reportErr))
	}
	if why := demoAsDesigned(res); why != "" {
		return exitWith(verdictExit(res.Verdict), fmt.Errorf("the demo did not go as designed: %s", why))
	}
	if output == "text" {
		fmt.Fprintf(m.Stdout, `
The demo went as designed: the autoscaler absorbed a slow shard, the breaker contained a dead one and
closed again, mild latency opened no breaker, and the client-side SLO guardrail stopped an outage too big for it (exit 2 for a real
'faultline run'). The figures above are what faultline records for your own services.
HTML report: %s
Next: faultline demo --print-runbook, point it at your system, and 'faultline validate' it.
`, reportPath)
	}
	return nil
}

// demoAsDesigned says what went differently from the demo's script, or "".
func demoAsDesigned(res *experiments.Result) string {
	want := []experiments.Verdict{experiments.Passed, experiments.Passed, experiments.Passed, experiments.Halted}
	if len(res.Experiments) != len(want) {
		return fmt.Sprintf("%d experiments ran, want %d (%s)", len(res.Experiments), len(want), res.Reason)
	}
	for i, x := range res.Experiments {
		if x.Verdict != want[i] {
			return fmt.Sprintf("experiment %s ended %s, want %s: %s", x.Name, x.Verdict, want[i], x.Reason)
		}
	}
	if res.Halt == nil || res.Halt.Guardrail != "client-p95" {
		return "the last experiment was not halted by the client-p95 guardrail"
	}
	return ""
}
