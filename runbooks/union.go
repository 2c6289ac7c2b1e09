package runbooks

import (
	"reflect"
	"strings"
)

// A union is a struct in which pointer fields carrying a marker tag (kind:"…" on Fault, probe:"…"
// on Guardrail) are alternatives: exactly one must be set. Adding a fault kind or a probe is adding
// one such field; loading, validation, the schema and Kind() pick it up from the tag.
type member struct {
	field string // YAML name
	tag   string // marker tag value, e.g. "process-kill"
	value any
}

func members(t reflect.Type, marker string) []member {
	var out []member
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := f.Tag.Get(marker); tag != "" {
			out = append(out, member{field: yamlName(f), tag: tag})
		}
	}
	return out
}

func setMembers(ptr any, marker string) []member {
	v := reflect.ValueOf(ptr).Elem()
	var out []member
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if tag := f.Tag.Get(marker); tag != "" && !v.Field(i).IsNil() {
			out = append(out, member{field: yamlName(f), tag: tag, value: v.Field(i).Interface()})
		}
	}
	return out
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}
