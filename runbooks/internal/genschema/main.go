// Command genschema writes runbooks/schema.json from the runbook Go types. It is run by
// `go generate ./runbooks`, which starts it in the runbooks directory; -o names another file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/faultline-dev/faultline/runbooks"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "genschema:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("genschema", flag.ContinueOnError)
	out := fs.String("o", "schema.json", "file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	// Without -o the working directory must be runbooks/ (as under go generate), so that a run from
	// elsewhere does not leave a stray schema.json behind.
	if *out == "schema.json" {
		if _, err := os.Stat("schema.go"); errors.Is(err, os.ErrNotExist) {
			return errors.New("run it as `go generate ./runbooks`, or pass -o " + runbooks.SchemaFile)
		}
	}
	data, err := runbooks.Schema()
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		return fmt.Errorf("write schema: %w", err)
	}
	return nil
}
