package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/agent/agentapi"
	"github.com/faultline-dev/faultline/injectors/agentlease"
	"github.com/faultline-dev/faultline/runbooks"
)

// hostFaults is what one host's agent answered.
type hostFaults struct {
	Host   string           `json:"host"`
	Agent  string           `json:"agent"`
	Faults []agentapi.Fault `json:"faults"`
	Error  string           `json:"error,omitempty"`
}

func (m *Main) agentsCommand() *cli.Command {
	return &cli.Command{
		Name:      "agents",
		Usage:     "list what the agents of a runbook's hosts hold: faults applied, their leases, recent reverts",
		ArgsUsage: "RUNBOOK",
		Description: `Asks every host in the runbook's environment.agents (GET /v1/faults, with the runbook's TLS
files) which faults it holds and which it reverted in the last hour, and why: "requested" (the
run ended), "lease expired" (the run stopped renewing: it died or lost the network). Nothing is
changed; 'faultline recover' reverts what a dead run left.

Exit codes: 0 every agent answered, 4 the runbook is invalid or has no environment.agents,
5 an agent could not be reached (the others are still listed).`,
		Flags: []cli.Flag{outputFlag("text (a table per host) or json")},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return exitWith(exitInvalid, fmt.Errorf("agents takes one runbook file, got %d arguments", c.NArg()))
			}
			output, err := checkOutput(c)
			if err != nil {
				return err
			}
			rb, err := runbooks.Load(c.Args().First())
			if err != nil {
				return exitWith(exitInvalid, err)
			}
			hosts := rb.Environment.Agents
			if hosts == nil {
				return exitWith(exitInvalid, fmt.Errorf("%s has no environment.agents: no hosts to ask", c.Args().First()))
			}
			agents, err := agentlease.NewAgents(hosts.TLS, "environment.agents.tls")
			if err != nil {
				return exitWith(exitInvalid, err)
			}
			defer agents.Close()
			out := listAgents(c.Context, agents, hosts.Hosts)
			if output == "json" {
				err = printJSON(m.Stdout, out)
			} else {
				err = printAgents(m.Stdout, out, time.Now())
			}
			if err != nil {
				return exitWith(exitAborted, err)
			}
			var unreachable []error
			for _, h := range out {
				if h.Error != "" {
					unreachable = append(unreachable, fmt.Errorf("host %s: %s", h.Host, h.Error))
				}
			}
			if len(unreachable) > 0 {
				return exitWith(exitAborted, errors.Join(unreachable...))
			}
			return nil
		},
	}
}

func listAgents(ctx context.Context, agents *agentlease.Agents, hosts []runbooks.AgentHost) []hostFaults {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out := make([]hostFaults, len(hosts))
	agentlease.ForEach(len(hosts), func(k int) {
		h := hosts[k]
		out[k] = hostFaults{Host: h.Name, Agent: h.URL()}
		fs, err := agents.Get(h.URL()).List(ctx)
		if err != nil {
			out[k].Error = err.Error()
			return
		}
		out[k].Faults = fs
	})
	return out
}

func printAgents(w io.Writer, hosts []hostFaults, now time.Time) error {
	for i, h := range hosts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		held := 0
		for _, f := range h.Faults {
			if f.State == agentapi.StateApplied {
				held++
			}
		}
		if h.Error != "" {
			fmt.Fprintf(w, "host %s (%s): unreachable: %s\n", h.Host, h.Agent, h.Error)
			continue
		}
		fmt.Fprintf(w, "host %s (%s): %d held, %d reverted in the last hour\n", h.Host, h.Agent, held, len(h.Faults)-held)
		if len(h.Faults) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FAULT\tRUN\tKIND\tSTATE\tWHEN\tOWNER")
		for _, f := range h.Faults {
			when := "lease until " + clock(f.ExpiresAt, now)
			state := f.State
			if f.State != agentapi.StateApplied {
				when = "reverted " + ago(f.RevertedAt, now)
				if f.RevertReason != "" {
					state += " (" + f.RevertReason + ")"
				}
			}
			name := f.Name
			if name == "" {
				name = f.ID
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", name, f.RunID, f.Kind, state, when, f.Owner)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	return nil
}
