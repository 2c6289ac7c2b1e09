package runbooks

//go:generate go run ./internal/genschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// SchemaFile is where the generated schema is committed, relative to the module root.
const SchemaFile = "runbooks/schema.json"

// The schema is JSON Schema draft 2020-12, but it uses only keywords that mean the same in
// draft-07, the draft editors implement (the VS Code YAML extension validates with draft-07 rules):
// type, properties, additionalProperties, required, enum, pattern, minimum, maximum, oneOf, items,
// $ref and description (TestSchemaUsesEditorSubset holds it to that). $defs is reached only through "$ref": "#/$defs/Name", a plain JSON pointer that
// draft-07 tools resolve too.
const schemaDraft = "https://json-schema.org/draft/2020-12/schema"

// Go durations (time.ParseDuration) as regular expressions. A component is a number ("1", "1.5",
// ".5") followed by a unit.
const (
	durationUnit      = `(ns|us|µs|μs|ms|s|m|h)`
	durationComponent = `([0-9]+(\.[0-9]*)?|\.[0-9]+)` + durationUnit
	// nonZeroComponent is a component whose number has a non-zero digit.
	nonZeroComponent = `([0-9]*[1-9][0-9]*(\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)` + durationUnit

	// DurationPattern matches what a Duration field accepts as a string: "0" or a sequence of
	// number-and-unit components ("250ms", "1m30s", "1.5h"). Negative durations are refused.
	DurationPattern = `^\+?(0|(` + durationComponent + `)+)$`
	// PositiveDurationPattern is DurationPattern without the zero durations ("0", "0s", "0.0m").
	PositiveDurationPattern = `^\+?(` + durationComponent + `)*` + nonZeroComponent + `(` + durationComponent + `)*$`
)

// isPlainTag reports whether the generator knows a struct tag key. Any other key on a pointer field
// marks a union member (kind:"…" on Fault, probe:"…" on Guardrail, toxic:"…" on ProxyToxic, ...);
// on any other field it is an error, so that a new tag is taught to the generator rather than
// silently ignored.
func isPlainTag(key string) bool {
	switch key {
	case "yaml", "json", "doc", "enum", "schema":
		return true
	}
	return false
}

// scalarSchema returns, by name, the schema of a type with its own YAML syntax (one that implements
// decodeNode), or nil. A field may also name one explicitly with a schema:"…" tag.
func scalarSchema(name string) map[string]any {
	switch name {
	case "duration":
		// A string such as "30s", or the integer 0 (`interval: 0` means unset, as the loader reads
		// it): pattern applies only to strings, minimum and maximum only to numbers.
		return map[string]any{
			"type":    []any{"string", "integer"},
			"pattern": DurationPattern,
			"minimum": 0,
			"maximum": 0,
		}
	case "threshold":
		return map[string]any{"oneOf": []any{
			map[string]any{"type": "integer", "minimum": 1, "description": "Consecutive failed evaluations."},
			map[string]any{"type": "string", "pattern": PositiveDurationPattern, "description": "How long the check must keep failing, e.g. 5s."},
		}}
	}
	return nil
}

// scalarSchemaName names the schema of a type with its own YAML syntax, or "".
func scalarSchemaName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "duration"
	case reflect.TypeFor[Threshold]():
		return "threshold"
	}
	return ""
}

// Schema returns the JSON Schema of a runbook, generated from the Go types: every object is closed
// (additionalProperties: false), fields without omitempty are required, doc tags become
// descriptions, enum tags become enums and each union (Fault, Guardrail, ...) accepts exactly one
// of its member fields. The output is deterministic: sorted keys, two-space indent, final newline.
func Schema() ([]byte, error) {
	g := &schemaGen{defs: map[string]map[string]any{}, types: map[string]reflect.Type{}}
	root, err := g.object(reflect.TypeFor[Runbook]())
	if err != nil {
		return nil, err
	}
	root["$schema"] = schemaDraft
	root["title"] = "faultline runbook (" + APIVersion + ")"
	root["description"] = "A faultline runbook: where it may run, the guardrails that watch it, and its experiments in order. Check a file with `faultline validate FILE`."
	if len(g.defs) > 0 {
		defs := map[string]any{}
		for k, v := range g.defs {
			defs[k] = v
		}
		root["$defs"] = defs
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("encode schema: %w", err)
	}
	return buf.Bytes(), nil
}

type schemaGen struct {
	defs  map[string]map[string]any
	types map[string]reflect.Type // which type owns each $defs name
}

// typeSchema returns the schema of a value of type t.
func (g *schemaGen) typeSchema(t reflect.Type) (map[string]any, error) {
	if name := scalarSchemaName(t); name != "" {
		return scalarSchema(name), nil
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[nodeDecoder]()) {
		return nil, fmt.Errorf("type %s decodes itself from YAML (decodeNode) but has no schema: add it to scalarSchemaName in schema.go", t)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.typeSchema(t.Elem())
	case reflect.Struct:
		if t.Name() == "" {
			return g.object(t)
		}
		if err := g.define(t); err != nil {
			return nil, err
		}
		return map[string]any{"$ref": "#/$defs/" + t.Name()}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}, nil
		}
		items, err := g.typeSchema(t.Elem())
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("map key type %s is not supported (the loader only decodes string keys)", t.Key())
		}
		vals, err := g.typeSchema(t.Elem())
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "object", "additionalProperties": vals}, nil
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}, nil
	}
	return nil, fmt.Errorf("type %s cannot be expressed in the schema", t)
}

// define adds a named struct type to $defs once.
func (g *schemaGen) define(t reflect.Type) error {
	if owner, ok := g.types[t.Name()]; ok {
		if owner != t {
			return fmt.Errorf("two types are named %s ($defs needs unique names): %s and %s", t.Name(), owner, t)
		}
		return nil
	}
	g.types[t.Name()] = t // before recursing, so that a recursive type terminates
	s, err := g.object(t)
	if err != nil {
		return err
	}
	g.defs[t.Name()] = s
	return nil
}

// object builds the schema of a struct: its YAML fields (inline embeddings flattened exactly as the
// loader flattens them), the required ones, and the union constraint when it has member fields.
func (g *schemaGen) object(t reflect.Type) (map[string]any, error) {
	fields := structFields(t)
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	// Struct order (by field index) keeps required and oneOf in the order the Go type declares.
	sort.Slice(names, func(i, j int) bool {
		a, b := fields[names[i]].index, fields[names[j]].index
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return len(a) < len(b)
	})
	props := map[string]any{}
	var required []any
	var union []string // member field names
	var marker string  // their tag key
	for _, name := range names {
		f := fields[name].field
		where := t.Name() + "." + f.Name
		keys, err := tagKeys(f.Tag)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		var member, memberTag string
		for _, k := range keys {
			if isPlainTag(k) {
				continue
			}
			if f.Type.Kind() != reflect.Pointer {
				return nil, fmt.Errorf("%s: unknown struct tag %q: teach schema.go what it means", where, k)
			}
			if member != "" {
				return nil, fmt.Errorf("%s: two union tags (%s and %s)", where, member, k)
			}
			member, memberTag = k, f.Tag.Get(k)
		}
		var s map[string]any
		if special := f.Tag.Get("schema"); special != "" {
			if s = scalarSchema(special); s == nil {
				return nil, fmt.Errorf("%s: schema tag %q names no known schema", where, special)
			}
		} else if s, err = g.typeSchema(f.Type); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if enum := f.Tag.Get("enum"); enum != "" {
			target := s
			if items, ok := s["items"].(map[string]any); ok && s["type"] == "array" {
				target = items
			}
			if target["type"] != "string" {
				return nil, fmt.Errorf("%s: enum tag on a field that is not a string or a list of strings", where)
			}
			var vals []any
			for _, e := range strings.Split(enum, ",") {
				vals = append(vals, e)
			}
			target["enum"] = vals
		}
		if member != "" {
			if marker != "" && marker != member {
				return nil, fmt.Errorf("%s: union tags %s and %s mixed in one type", where, marker, member)
			}
			marker = member
			union = append(union, name)
			if f.Tag.Get("doc") == "" {
				s["description"] = fmt.Sprintf("%s%s %s; exactly one %s may be set.", strings.ToUpper(member[:1]), member[1:], memberTag, member)
			}
		}
		if doc := f.Tag.Get("doc"); doc != "" {
			s["description"] = doc
		}
		props[name] = s
		if _, opts, _ := strings.Cut(f.Tag.Get("yaml"), ","); !hasOpt(opts, "omitempty") {
			required = append(required, name)
		}
	}
	out := map[string]any{
		"type":                 "object",
		"properties":           props,
		"additionalProperties": false,
	}
	if len(required) > 0 {
		out["required"] = required
	}
	if len(union) > 0 {
		// Each branch is satisfied by one member being present; oneOf then fails both when none is
		// and when two are, which is exactly "set exactly one".
		var one []any
		for _, m := range union {
			one = append(one, map[string]any{"required": []any{m}})
		}
		out["oneOf"] = one
		// Say it in words too: editors show the description, not the logic.
		out["description"] = fmt.Sprintf("Set exactly one %s: %s.", marker, strings.Join(union, ", "))
	}
	return out, nil
}

func hasOpt(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// tagKeys lists the keys of a conventional struct tag (key:"value" pairs separated by spaces).
func tagKeys(tag reflect.StructTag) ([]string, error) {
	var keys []string
	s := strings.TrimSpace(string(tag))
	for s != "" {
		i := strings.Index(s, `:"`)
		if i <= 0 || strings.ContainsAny(s[:i], " \t\"") {
			return nil, fmt.Errorf("malformed struct tag %q", tag)
		}
		key := s[:i]
		rest := s[i+1:]
		// Find the closing quote of the value, skipping escaped characters.
		j := 1
		for j < len(rest) && rest[j] != '"' {
			if rest[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(rest) {
			return nil, fmt.Errorf("malformed struct tag %q", tag)
		}
		if _, err := strconv.Unquote(rest[:j+1]); err != nil {
			return nil, fmt.Errorf("malformed struct tag %q", tag)
		}
		keys = append(keys, key)
		s = strings.TrimSpace(rest[j+1:])
	}
	return keys, nil
}
