package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/runbooks"
)

func (m *Main) validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check runbooks without touching anything",
		ArgsUsage: "FILE...",
		Description: `Decodes each runbook strictly (unknown fields, wrong types and bad durations are errors)
and validates it, reporting every problem with file:line:column. Exit 0 when all are valid,
4 otherwise. Nothing is contacted: use 'faultline run --dry-run' to resolve targets.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return exitWith(exitInvalid, errors.New("validate needs at least one runbook file"))
			}
			type report struct {
				File     string                 `json:"file"`
				Valid    bool                   `json:"valid"`
				Errors   []*runbooks.FieldError `json:"errors,omitempty"`
				Warnings []string               `json:"warnings,omitempty"`
			}
			var reports []report
			bad := 0
			for _, f := range c.Args().Slice() {
				rb, err := runbooks.Load(f)
				r := report{File: f, Valid: err == nil}
				if err == nil {
					r.Warnings = runbooks.Warnings(rb)
				}
				if err != nil {
					bad++
					var list runbooks.ErrorList
					if errors.As(err, &list) {
						r.Errors = list
					} else {
						r.Errors = []*runbooks.FieldError{{File: f, Message: err.Error()}}
					}
				}
				reports = append(reports, r)
			}
			switch c.String("output") {
			case "json":
				enc := json.NewEncoder(m.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(reports); err != nil {
					return fmt.Errorf("write report: %w", err)
				}
			case "text":
				for _, r := range reports {
					for _, w := range r.Warnings {
						fmt.Fprintf(m.Stdout, "%s: warning: %s\n", r.File, w)
					}
					if r.Valid {
						fmt.Fprintf(m.Stdout, "%s: valid\n", r.File)
						continue
					}
					for _, e := range r.Errors {
						fmt.Fprintln(m.Stdout, e.Error())
					}
				}
			default:
				return exitWith(exitInvalid, fmt.Errorf("--output must be text or json"))
			}
			if bad > 0 {
				return exitWith(exitInvalid, fmt.Errorf("%d of %d runbook(s) invalid", bad, len(reports)))
			}
			return nil
		},
	}
}
