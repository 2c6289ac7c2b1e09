package experiments

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func TestResultSchemaUpToDate(t *testing.T) {
	want, err := ResultSchema()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Base(ResultSchemaFile))
	if err != nil {
		t.Fatalf("%v: run go generate ./experiments", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal(ResultSchemaFile + " is stale: run go generate ./experiments")
	}
}

func resultSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Base(ResultSchemaFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("result.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("result.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The checked-in documents are results as earlier faultlines wrote them: every one must still
// load, and match the schema.
func TestOldResultsLoad(t *testing.T) {
	schema := resultSchema(t)
	files, _ := filepath.Glob("testdata/result-*.json")
	if len(files) < 2 {
		t.Fatalf("want the checked-in documents of every version, found %q", files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			res, err := ReadResultFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if res.SchemaVersion != 1 || res.RunID == "" || len(res.Experiments) == 0 || len(res.Experiments[0].Guardrails[0].Observations) == 0 {
				t.Errorf("loaded %s: version %d, run %q, %d experiments", file, res.SchemaVersion, res.RunID, len(res.Experiments))
			}
			data, _ := os.ReadFile(file)
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(inst); err != nil {
				t.Errorf("%s does not match %s: %v", file, ResultSchemaFile, err)
			}
			// What this faultline writes back validates too.
			out, _ := json.Marshal(res)
			inst, _ = jsonschema.UnmarshalJSON(bytes.NewReader(out))
			if err := schema.Validate(inst); err != nil {
				t.Errorf("re-encoded %s does not match the schema: %v", file, err)
			}
		})
	}
}

func TestDecodeResultRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		doc, want string
		version   bool
	}{
		"newer":       {`{"schemaVersion": 2, "runId": "x", "verdict": "passed"}`, "unsupported result schema version 2 (this faultline reads versions 1 to 1; use a newer faultline)", true},
		"zero":        {`{"schemaVersion": 0, "runId": "x", "verdict": "passed"}`, "unsupported result schema version 0", true},
		"not json":    {`verdict: passed`, "not a faultline result document", false},
		"a runbook":   {`{"apiVersion": "faultline.dev/v1alpha1", "kind": "Runbook"}`, "not a faultline result document: runId and verdict are missing", false},
		"wrong types": {`{"runId": "x", "verdict": "passed", "experiments": 3}`, "decode result document", false},
	} {
		_, err := DecodeResult([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
		if errors.Is(err, ErrResultVersion) != c.version {
			t.Errorf("%s: errors.Is(ErrResultVersion) = %v", name, !c.version)
		}
	}
}
