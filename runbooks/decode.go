package runbooks

import (
	"encoding/base64"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// nodeDecoder is implemented by scalar types with their own syntax (durations, thresholds).
type nodeDecoder interface {
	decodeNode(n *yaml.Node) error
}

// decoder turns a yaml.Node tree into Go values strictly: unknown fields, duplicate keys and wrong
// types are errors, each with the node's position. yaml.v3's own KnownFields mode stops at the first
// error and reports only a line, which is why this exists.
type decoder struct {
	file      string
	errs      ErrorList
	positions map[string]Pos
	values    int // nodes decoded so far, counting every expansion of an alias
	fields    map[reflect.Type]map[string]fieldInfo
}

// maxValues bounds the work one file can cause: a few aliases nested in lists can otherwise
// expand a tiny file into billions of values ("billion laughs").
const maxValues = 100_000

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Pos: Pos{n.Line, n.Column}, Path: path, Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				return
			}
			n = n.Content[0]
		} else {
			n = n.Alias
		}
	}
	if d.values++; d.values > maxValues {
		if d.values == maxValues+1 {
			d.fail(n, path, "the runbook expands to more than %d values (every use of an alias counts): not decoding further", maxValues)
		}
		return
	}
	d.positions[path] = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the zero value: "field:" with nothing after it means unset
	}
	if v.CanAddr() {
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			if err := nd.decodeNode(n); err != nil {
				d.fail(n, path, "%v", err)
			}
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 && n.Kind == yaml.ScalarNode {
			b, err := base64.StdEncoding.DecodeString(n.Value)
			if err != nil {
				d.fail(n, path, "expected base64 data: %v", err)
				return
			}
			v.SetBytes(b)
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping, got %s", describe(n))
			return
		}
		if v.Type().Key().Kind() != reflect.String {
			d.fail(n, path, "internal: map key type %s is not supported", v.Type().Key())
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				d.fail(k, joinPath(path, k.Value), "duplicate key %q", k.Value)
				continue
			}
			seen[k.Value] = true
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, elem, joinPath(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
		}
		v.Set(m)
	case reflect.String:
		if !d.scalar(n, path, "!!str", "a string") {
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if !d.scalar(n, path, "!!bool", "true or false") {
			return
		}
		b, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err != nil { // an explicit tag: `!!bool yes` must not silently become false
			d.fail(n, path, "expected true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !d.scalar(n, path, "!!int", "a whole number") {
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "%q is out of range for a whole number", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !d.scalar(n, path, "!!int", "a non-negative whole number") {
			return
		}
		u, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 0, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "%q is not a non-negative whole number in range", n.Value)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") {
			d.fail(n, path, "expected a number, got %s", describe(n))
			return
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(n, path, "%q is not a finite number", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, "internal: cannot decode into %s", v.Type())
	}
}

// scalar checks that n is a scalar with the wanted tag. Quoted numbers ("8080") are strings in
// YAML; unquoted ones in a string field are refused so that `version: 1.10` does not silently become "1.1".
func (d *decoder) scalar(n *yaml.Node, path, tag, want string) bool {
	if n.Kind == yaml.ScalarNode && n.Tag == tag {
		return true
	}
	if n.Kind == yaml.ScalarNode && tag == "!!str" {
		d.fail(n, path, "expected %s, got %s (quote it to make it a string)", want, describe(n))
		return false
	}
	d.fail(n, path, "expected %s, got %s", want, describe(n))
	return false
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		kind := map[string]string{"!!int": "a number", "!!float": "a number", "!!bool": "a boolean", "!!str": "a string"}[n.Tag]
		if kind == "" {
			kind = n.Tag
		}
		return fmt.Sprintf("%s %q", kind, n.Value)
	}
	return "an unsupported YAML node"
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	fields, ok := d.fields[v.Type()]
	if !ok {
		fields = structFields(v.Type())
		if d.fields == nil {
			d.fields = map[reflect.Type]map[string]fieldInfo{}
		}
		d.fields[v.Type()] = fields
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fp := joinPath(path, k.Value)
		f, ok := fields[k.Value]
		if !ok {
			d.fail(k, fp, "unknown field %q%s", k.Value, suggest(k.Value, fields))
			continue
		}
		if seen[k.Value] {
			d.fail(k, fp, "duplicate field %q", k.Value)
			continue
		}
		seen[k.Value] = true
		d.positions[fp] = Pos{k.Line, k.Column}
		d.decode(val, v.FieldByIndex(f.index), fp)
		// The key's position is more useful than the value's for "this field is wrong" messages.
		d.positions[fp] = Pos{k.Line, k.Column}
	}
}

type fieldInfo struct {
	index []int
	field reflect.StructField
}

// structFields maps YAML names to fields, flattening `yaml:",inline"` embeddings.
func structFields(t reflect.Type) map[string]fieldInfo {
	out := map[string]fieldInfo{}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			idx := append(append([]int{}, index...), i)
			if strings.Contains(opts, "inline") {
				walk(f.Type, idx)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name[:1]) + f.Name[1:]
			}
			out[name] = fieldInfo{index: idx, field: f}
		}
	}
	walk(t, nil)
	return out
}

// suggest names the closest valid field, because most unknown fields are typos.
func suggest(name string, fields map[string]fieldInfo) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestD := "", 3
	for _, k := range names {
		if dd := levenshtein(strings.ToLower(name), strings.ToLower(k)); dd < bestD {
			best, bestD = k, dd
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return fmt.Sprintf(" (valid fields: %s)", strings.Join(names, ", "))
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
