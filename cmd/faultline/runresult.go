package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/faultline-dev/faultline/experiments"
)

// emitResult writes the result file (if asked) and prints the result. A result file that cannot
// be written is an error of the run: CI reads that file, and a missing one must not pass silently.
// The exit code is then the verdict's if that is already non-zero, else 5.
func (m *Main) emitResult(c *cli.Context, output string, res *experiments.Result) error {
	var fileErr error
	if path := c.String("result-file"); path != "" {
		if err := writeJSONFile(path, res); err != nil {
			fileErr = fmt.Errorf("write --result-file %s: %w", path, err)
		}
	}
	if output == "json" {
		if err := printJSON(m.Stdout, res); err != nil {
			return exitWith(exitAborted, err)
		}
	} else if res.Verdict != experiments.Invalid { // the loader's errors are on stderr already
		printResult(m.Stdout, res)
	}
	if fileErr != nil {
		code := verdictExit(res.Verdict)
		if code == 0 {
			code = exitAborted
		}
		return exitWith(code, fmt.Errorf("%w (verdict %s)", fileErr, res.Verdict))
	}
	return nil
}

// invalidResult is the result document of a runbook that did not load: nothing was touched.
func invalidResult(runID, file string, err error) *experiments.Result {
	now := time.Now()
	return &experiments.Result{RunID: runID, Runbook: file, Verdict: experiments.Invalid,
		ExitCode: experiments.Invalid.ExitCode(), Reason: err.Error(), StartedAt: now, EndedAt: now,
		Experiments: []experiments.ExperimentResult{}}
}
