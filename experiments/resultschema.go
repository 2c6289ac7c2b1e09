package experiments

//go:generate go run ./internal/genresultschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

// ResultSchemaFile is where the generated schema of the result document is committed, relative
// to the module root.
const ResultSchemaFile = "experiments/result.schema.json"

// ResultSchema returns the JSON Schema (draft 2020-12) of the result document, generated from the
// Go types by their json tags: fields without omitempty are required. Objects stay open (a newer
// faultline of the same schemaVersion may add fields). The output is deterministic.
func ResultSchema() ([]byte, error) {
	g := &resultSchemaGen{defs: map[string]any{}, owner: map[string]reflect.Type{}}
	root, err := g.object(reflect.TypeFor[Result]())
	if err != nil {
		return nil, err
	}
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["title"] = fmt.Sprintf("faultline result document (schemaVersion %d)", ResultSchemaVersion)
	root["description"] = "What `faultline run --output json` prints, --result-file writes and the daemon stores; docs/results.md explains each field."
	root["$defs"] = g.defs
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("encode result schema: %w", err)
	}
	return buf.Bytes(), nil
}

type resultSchemaGen struct {
	defs  map[string]any
	owner map[string]reflect.Type
}

func (g *resultSchemaGen) typeSchema(t reflect.Type) (map[string]any, error) {
	switch t {
	case reflect.TypeFor[time.Time]():
		return map[string]any{"type": "string", "format": "date-time"}, nil
	case reflect.TypeFor[time.Duration]():
		return map[string]any{"type": "integer", "description": "Nanoseconds."}, nil
	case reflect.TypeFor[runbooks.Duration]():
		return map[string]any{"type": "string", "description": "A Go duration, e.g. 1m30s."}, nil
	case reflect.TypeFor[json.RawMessage]():
		return map[string]any{}, nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.typeSchema(t.Elem())
	case reflect.Interface:
		return map[string]any{}, nil
	case reflect.Struct:
		if err := g.define(t); err != nil {
			return nil, err
		}
		return map[string]any{"$ref": "#/$defs/" + t.Name()}, nil
	case reflect.Slice:
		items, err := g.typeSchema(t.Elem())
		if err != nil {
			return nil, err
		}
		// A nil slice without omitempty is written as null.
		return map[string]any{"type": []any{"array", "null"}, "items": items}, nil
	case reflect.Map:
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
	return nil, fmt.Errorf("type %s cannot be expressed in the result schema", t)
}

func (g *resultSchemaGen) define(t reflect.Type) error {
	if o, ok := g.owner[t.Name()]; ok {
		if o != t {
			return fmt.Errorf("two types are named %s: %s and %s", t.Name(), o, t)
		}
		return nil
	}
	g.owner[t.Name()] = t
	s, err := g.object(t)
	if err != nil {
		return err
	}
	g.defs[t.Name()] = s
	return nil
}

// object lists a struct's JSON fields, flattening embedded structs as encoding/json does.
func (g *resultSchemaGen) object(t reflect.Type) (map[string]any, error) {
	props := map[string]any{}
	var required []string
	if err := g.fields(t, props, &required); err != nil {
		return nil, err
	}
	out := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		sort.Strings(required)
		req := make([]any, len(required))
		for i, r := range required {
			req[i] = r
		}
		out["required"] = req
	}
	return out, nil
}

func (g *resultSchemaGen) fields(t reflect.Type, props map[string]any, required *[]string) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if err := g.fields(ft, props, required); err != nil {
					return err
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		s, err := g.typeSchema(f.Type)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", t.Name(), f.Name, err)
		}
		props[name] = s
		if !hasJSONOpt(opts, "omitempty") {
			*required = append(*required, name)
		}
	}
	return nil
}

func hasJSONOpt(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}
