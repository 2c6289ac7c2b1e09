// Command faultline runs chaos experiments against staging and golden-copy environments, with SLO
// guardrails that halt and revert everything the moment one trips.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(NewMain(os.Stdout, os.Stderr).Run(context.Background(), os.Args))
}
