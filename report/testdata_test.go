package report

import (
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the checked-in result documents made from the fixtures")

// TestFixtureDocuments keeps experiments/testdata/result-v1.json, the checked-in document of the
// current schema version that the experiments package loads, in step with the fixtures.
func TestFixtureDocuments(t *testing.T) {
	b, err := json.MarshalIndent(haltedResult(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	const path = "../experiments/testdata/result-v1.json"
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%v: run go test ./report -run TestFixtureDocuments -update", err)
	}
}
