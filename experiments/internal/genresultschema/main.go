// Command genresultschema writes experiments/result.schema.json (run by go generate ./experiments).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/faultline-dev/faultline/experiments"
)

func main() {
	b, err := experiments.ResultSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// go generate runs in the package directory.
	if err := os.WriteFile(filepath.Base(experiments.ResultSchemaFile), b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
