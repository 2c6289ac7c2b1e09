package runbooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// FuzzParse feeds the loader arbitrary bytes, starting from every testdata and example file. (A
// failing input the fuzzer finds is written to testdata/fuzz/FuzzParse and runs as a seed from
// then on: commit it with the fix.) The loader must never panic; an error must be
// an ErrorList of located, non-empty messages; a runbook it accepts must validate again unchanged
// and, written as JSON, satisfy the JSON Schema editors use and load again to the same runbook.
//
//	go test ./runbooks -run '^$' -fuzz FuzzParse -fuzztime 60s
func FuzzParse(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{"testdata/*.yaml", "examples/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, files...)
	}
	if len(seeds) < 20 {
		f.Fatalf("only %d seed files", len(seeds))
	}
	for _, file := range seeds {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	sch := compileSchema(f, false)

	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		rb, err := Parse(name, data)
		if err != nil {
			if rb != nil {
				t.Fatalf("Parse returned both a runbook and an error: %v", err)
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T is not a non-empty ErrorList: %v", err, err)
			}
			for _, e := range list {
				if e == nil || e.Message == "" || e.File != name || e.Pos.Line < 0 || e.Pos.Column < 0 {
					t.Fatalf("malformed error entry %#v in\n%v", e, err)
				}
				if (e.Pos.Line == 0) != (e.Pos.Column == 0) {
					t.Fatalf("half a position in %#v", e)
				}
				if e.Pos.Line > yamlLines(data) {
					t.Fatalf("position past the end of the file in %#v", e)
				}
			}
			return
		}
		if rb == nil {
			t.Fatal("Parse returned neither a runbook nor an error")
		}
		if v := rb.Validate(); len(v.problems) > 0 {
			t.Fatalf("accepted runbook fails re-validation: %+v", v.problems)
		}
		doc, err := json.Marshal(rb)
		if err != nil {
			t.Fatalf("accepted runbook cannot be written as JSON: %v", err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
		if err != nil {
			t.Fatalf("re-read %s: %v", doc, err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Fatalf("accepted runbook, as JSON, fails the schema:\n%s\n%v", doc, err)
		}
		// JSON is YAML: the loader reads its own JSON back to the same runbook.
		again, err := Parse(name, doc)
		if err != nil {
			t.Fatalf("accepted runbook, as JSON, does not load:\n%s\n%v", doc, err)
		}
		if doc2, _ := json.Marshal(again); !bytes.Equal(doc, doc2) {
			t.Fatalf("JSON round trip changed the runbook:\n%s\n%s", doc, doc2)
		}
	})
}
