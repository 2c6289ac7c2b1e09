package runbooks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

func TestSchemaUpToDate(t *testing.T) {
	want, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatalf("%v: run go generate ./runbooks", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal(SchemaFile + " is stale: run go generate ./runbooks")
	}
}

func TestSchemaDeterministic(t *testing.T) {
	a, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := Schema()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatal("two calls of Schema() differ")
		}
	}
	if !bytes.HasSuffix(a, []byte("}\n")) || bytes.HasSuffix(a, []byte("\n\n")) {
		t.Error("schema does not end with exactly one newline")
	}
	// Sorted keys and a two-space indent: re-encoding the parsed document changes nothing.
	var doc any
	if err := json.Unmarshal(a, &doc); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, buf.Bytes()) {
		t.Error("schema is not in canonical form (sorted keys, 2-space indent)")
	}
}

// editorKeywords are the keywords the schema may use: the ones that mean the same in draft 2020-12
// and in draft-07, which is what the VS Code YAML extension (yaml-language-server) implements.
// Newer keywords (unevaluatedProperties, dependentRequired, prefixItems, $dynamicRef, ...) would be
// ignored there, and the editor would accept what faultline validate refuses.
var editorKeywords = map[string]bool{
	"$schema": true, "$ref": true, "$defs": true, "title": true, "description": true,
	"type": true, "properties": true, "additionalProperties": true, "required": true, "items": true,
	"enum": true, "pattern": true, "minimum": true, "maximum": true, "oneOf": true, "contentEncoding": true,
}

func TestSchemaUsesEditorSubset(t *testing.T) {
	doc := schemaDoc(t)
	defs, _ := doc["$defs"].(map[string]any)
	var walk func(s map[string]any, at string)
	walk = func(s map[string]any, at string) {
		for k, v := range s {
			if !editorKeywords[k] {
				t.Errorf("%s: keyword %q is outside the draft-07/2020-12 subset editors implement", at, k)
			}
			switch k {
			case "$ref":
				ref, _ := v.(string)
				name, ok := strings.CutPrefix(ref, "#/$defs/")
				if _, found := defs[name]; !ok || !found {
					t.Errorf("%s: $ref %q is not a local #/$defs/ reference that resolves", at, ref)
				}
			case "properties", "$defs":
				for name, sub := range v.(map[string]any) {
					walk(sub.(map[string]any), at+"/"+k+"/"+name)
				}
			case "items":
				walk(v.(map[string]any), at+"/items")
			case "additionalProperties":
				if sub, ok := v.(map[string]any); ok {
					walk(sub, at+"/additionalProperties")
				}
			case "oneOf":
				for i, sub := range v.([]any) {
					walk(sub.(map[string]any), fmt.Sprintf("%s/oneOf/%d", at, i))
				}
			}
		}
		// Every object with declared properties is closed; maps (no properties) say what values they hold.
		if _, ok := s["properties"]; ok && s["additionalProperties"] != false {
			t.Errorf("%s: object without additionalProperties: false", at)
		}
		if s["type"] == "object" && s["additionalProperties"] == nil {
			t.Errorf("%s: object that neither closes nor types its additional properties", at)
		}
	}
	walk(doc, "#")
}

// TestSchemaMirrorsTypes checks the generator's rules against the Go types, so that a new field or
// kind added to the types shows up in the schema the way the loader reads it.
func TestSchemaMirrorsTypes(t *testing.T) {
	doc := schemaDoc(t)
	def := func(name string) map[string]any {
		t.Helper()
		d, ok := doc["$defs"].(map[string]any)[name].(map[string]any)
		if !ok {
			t.Fatalf("no $defs/%s", name)
		}
		return d
	}
	required := func(s map[string]any) []string {
		var out []string
		for _, r := range s["required"].([]any) {
			out = append(out, r.(string))
		}
		return out
	}
	if got := required(doc); !slices.Equal(got, []string{"apiVersion", "kind", "metadata", "environment", "experiments"}) {
		t.Errorf("Runbook required = %q", got)
	}
	if got := required(def("Experiment")); !slices.Equal(got, []string{"name", "duration", "faults"}) {
		t.Errorf("Experiment required = %q", got)
	}
	if _, ok := def("Policy")["required"]; ok {
		t.Errorf("Policy has only optional fields but a required list")
	}

	// Unions: one oneOf branch per member, in declaration order, each requiring that member.
	unions := map[string][]string{}
	unions["Fault"], _ = FaultKinds()
	for _, m := range members(reflect.TypeFor[Guardrail](), "probe") {
		unions["Guardrail"] = append(unions["Guardrail"], m.field)
	}
	for name, fields := range unions {
		var got []string
		for _, b := range def(name)["oneOf"].([]any) {
			req := b.(map[string]any)["required"].([]any)
			if len(req) != 1 || len(b.(map[string]any)) != 1 {
				t.Errorf("%s: oneOf branch %v should only require one member", name, b)
			}
			got = append(got, req[0].(string))
		}
		if !slices.Equal(got, fields) {
			t.Errorf("%s oneOf members = %q, want %q", name, got, fields)
		}
	}

	// Inline fields are flattened: processKill has the ProcessTarget fields next to its own.
	pk := def("ProcessKill")["properties"].(map[string]any)
	for _, f := range []string{"pidFile", "exe", "count", "percent", "signal", "interval"} {
		if _, ok := pk[f]; !ok {
			t.Errorf("ProcessKill lacks flattened field %q", f)
		}
	}
	if _, ok := doc["$defs"].(map[string]any)["ProcessTarget"]; ok {
		t.Errorf("inline-only type ProcessTarget has a $defs entry of its own")
	}

	env := def("Environment")["properties"].(map[string]any)
	if got := env["type"].(map[string]any)["enum"]; !reflect.DeepEqual(got, []any{"staging", "golden-copy", "local"}) {
		t.Errorf("environment.type enum = %v", got)
	}
	if d := env["type"].(map[string]any)["description"].(string); !strings.Contains(d, "no production type") {
		t.Errorf("environment.type description = %q, want the doc tag", d)
	}
	labels := def("Metadata")["properties"].(map[string]any)["labels"]
	if want := map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}; !reflect.DeepEqual(labels, want) {
		t.Errorf("metadata.labels = %v, want %v", labels, want)
	}
	forSchema := def("Guardrail")["properties"].(map[string]any)["for"].(map[string]any)
	if len(forSchema["oneOf"].([]any)) != 2 {
		t.Errorf("guardrail.for = %v, want oneOf integer | duration", forSchema)
	}
}

// TestSchemaGeneratorRefuses checks that what the generator cannot express is an error, not a
// silently wrong schema.
func TestSchemaGeneratorRefuses(t *testing.T) {
	type unknownTag struct {
		A string `yaml:"a" default:"x"`
	}
	type badEnum struct {
		A int `yaml:"a" enum:"1,2"`
	}
	type intMap struct {
		A map[int]string `yaml:"a"`
	}
	type mixedUnion struct {
		A *Recovery `yaml:"a,omitempty" kind:"a"`
		B *Recovery `yaml:"b,omitempty" probe:"b"`
	}
	type badSchemaTag struct {
		A Duration `yaml:"a" schema:"weekday"`
	}
	type selfDecoding struct {
		A selfDecoder `yaml:"a"`
	}
	for _, v := range []any{unknownTag{}, badEnum{}, intMap{}, mixedUnion{}, badSchemaTag{}, selfDecoding{}} {
		g := &schemaGen{defs: map[string]map[string]any{}, types: map[string]reflect.Type{}}
		if _, err := g.object(reflect.TypeOf(v)); err == nil {
			t.Errorf("%T: no error", v)
		} else {
			t.Logf("%T: %v", v, err)
		}
	}
}

type selfDecoder struct{ n int }

func (s *selfDecoder) decodeNode(*yaml.Node) error { s.n++; return nil }

func TestDurationPatterns(t *testing.T) {
	dur := regexp.MustCompile(DurationPattern)
	pos := regexp.MustCompile(PositiveDurationPattern)
	cases := []struct {
		s               string
		valid, positive bool
	}{
		{"0", true, false},
		{"+0", true, false},
		{"0s", true, false},
		{"0.0m", true, false},
		{"1ns", true, true},
		{"250ms", true, true},
		{"30s", true, true},
		{"1m30s", true, true},
		{"1.5h", true, true},
		{".5s", true, true},
		{"5.s", true, true},
		{"0.001s", true, true},
		{"1h0m0s", true, true},
		{"0h1m", true, true},
		{"10us", true, true},
		{"10µs", true, true}, // U+00B5, what time.Duration.String writes
		{"10μs", true, true}, // U+03BC
		{"+5s", true, true},
		{"2562047h47m16.854775807s", true, true},
		{"", false, false},
		{"30", false, false},
		{"30 s", false, false},
		{"30 seconds", false, false},
		{"-5s", false, false},
		{"-0s", false, false},
		{"s", false, false},
		{".s", false, false},
		{"1d", false, false},
		{"5S", false, false},
		{"1m 30s", false, false},
		{"9999999999999h", true, true},
	}
	for _, c := range cases {
		if got := dur.MatchString(c.s); got != c.valid {
			t.Errorf("DurationPattern matches %q = %v, want %v", c.s, got, c.valid)
		}
		if got := pos.MatchString(c.s); got != c.positive {
			t.Errorf("PositiveDurationPattern matches %q = %v, want %v", c.s, got, c.positive)
		}
		// The patterns agree with the loader (time.ParseDuration, no negatives) but for two cases a
		// regular expression cannot or need not see: overflow, and a negative zero.
		d, err := time.ParseDuration(c.s)
		loaderOK, loaderPositive := err == nil && d >= 0, err == nil && d > 0
		switch c.s {
		case "9999999999999h":
			loaderOK, loaderPositive = true, true
		case "-0s":
			loaderOK = false
		}
		if loaderOK != c.valid || loaderPositive != c.positive {
			t.Errorf("%q: time.ParseDuration = %v, %v; the patterns disagree with the loader", c.s, d, err)
		}
	}
}

// compileSchema compiles schema.json as JSON Schema draft 2020-12 (what it declares) or, with
// draft7, as draft-07: the VS Code YAML extension validates with draft-07 rules, so the schema must
// mean the same under both.
func compileSchema(t testing.TB, draft7 bool) *jsonschema.Schema {
	t.Helper()
	data, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if draft7 {
		doc.(map[string]any)["$schema"] = "http://json-schema.org/draft-07/schema#"
	}
	const url = "file:///faultline/runbooks/schema.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile schema (draft7=%v): %v", draft7, err)
	}
	return sch
}

// yamlInstance reads a YAML file into the JSON value an editor validates.
func yamlInstance(t testing.TB, data []byte) (any, error) {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(j))
}

// TestSchemaAcceptsValidRunbooks validates every example and valid-*.yaml against the schema, under
// both drafts.
func TestSchemaAcceptsValidRunbooks(t *testing.T) {
	examples, _ := filepath.Glob("examples/*.yaml")
	valid, _ := filepath.Glob("testdata/valid-*.yaml")
	// Empty values (`field:` meaning unset) are a loader tolerance the schema does not share: an
	// editor flags them. That file is the one valid runbook the schema refuses, on purpose.
	valid = slices.DeleteFunc(valid, func(f string) bool { return f == "testdata/valid-null-values.yaml" })
	files := append(examples, valid...)
	if len(examples) == 0 || len(valid) == 0 {
		t.Fatalf("no files: %q", files)
	}
	for _, draft7 := range []bool{false, true} {
		sch := compileSchema(t, draft7)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			inst, err := yamlInstance(t, data)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if err := sch.Validate(inst); err != nil {
				t.Errorf("%s (draft7=%v) does not validate against the schema:\n%v", f, draft7, err)
			}
		}
	}
}

// TestSchemaRefusesStructuralErrors checks that the schema catches, in the editor, the mistakes
// that are a matter of shape: every testdata file listed here must fail schema validation.
// (Semantic checks, e.g. duplicate names or the minimum interval, are the loader's alone.)
func TestSchemaRefusesStructuralErrors(t *testing.T) {
	files := []string{
		"invalid-unknown-field", "invalid-nested-typo", "invalid-wrong-type", "invalid-unquoted-number",
		"invalid-bad-duration", "invalid-negative-duration", "invalid-two-fault-kinds", "invalid-no-fault-kind",
		"invalid-on-error", "invalid-environment-production", "invalid-api-version-kind", "invalid-threshold",
		"invalid-not-a-mapping", "invalid-multiple-decode-errors",
		// Not invalid-merge-key: editors apply YAML merge keys, the loader refuses them.
	}
	snippets := map[string]string{
		"no probe":        "guardrails: [{name: g}]",
		"two probes":      "guardrails: [{name: g, http: {url: 'http://a/'}, prometheus: {address: 'http://p/'}}]",
		"for zero":        "guardrails: [{name: g, for: 0, http: {url: 'http://a/'}}]",
		"for 0s":          "guardrails: [{name: g, for: 0s, http: {url: 'http://a/'}}]",
		"for negative":    "guardrails: [{name: g, for: -1, http: {url: 'http://a/'}}]",
		"for float":       "guardrails: [{name: g, for: 1.5, http: {url: 'http://a/'}}]",
		"interval number": "guardrails: [{name: g, interval: 5, http: {url: 'http://a/'}}]",
		"headers list":    "guardrails: [{name: g, http: {url: 'http://a/', headers: [a]}}]",
		"header number":   "guardrails: [{name: g, http: {url: 'http://a/', headers: {a: 1}}}]",
		"no url":          "guardrails: [{name: g, http: {method: GET}}]",
	}
	sch := compileSchema(t, true)
	sch2020 := compileSchema(t, false)
	check := func(name string, data []byte) {
		inst, err := yamlInstance(t, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sch.Validate(inst) == nil || sch2020.Validate(inst) == nil {
			t.Errorf("%s validates against the schema, want a schema error", name)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile("testdata/" + f + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		check(f, data)
	}
	base, err := os.ReadFile("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(snippets))
	for n := range snippets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		check(n, append(append([]byte{}, base...), snippets[n]+"\n"...))
	}
	// And the accepted forms of the same fields.
	for _, ok := range []string{
		"guardrails: [{name: g, for: 3, interval: 0, http: {url: 'http://a/', headers: {a: b}}}]",
		"guardrails: [{name: g, for: 5s, interval: 1m30s, http: {url: 'http://a/'}}]",
	} {
		inst, err := yamlInstance(t, append(append([]byte{}, base...), ok+"\n"...))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// schemaDoc is the generated schema, parsed.
func schemaDoc(t *testing.T) map[string]any {
	t.Helper()
	data, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}
