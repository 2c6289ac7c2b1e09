package runbooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads, strictly decodes and validates a runbook file. The error, if any, is an ErrorList
// naming file:line:column for every problem found.
func Load(path string) (*Runbook, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read runbook: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for bytes already in memory; name is used in error positions.
func Parse(name string, data []byte) (*Runbook, error) {
	var rb Runbook
	if err := decodeFile(name, data, &rb, func(v *Validator) { *v = *rb.Validate() }); err != nil {
		return nil, err
	}
	return &rb, nil
}

// DecodeStrict decodes one YAML document into out with the runbook loader's strictness and error
// positions, then runs validate (which may be nil). Other strict configs (the daemon's) use it.
func DecodeStrict(name string, data []byte, out any, validate func() *Validator) error {
	return decodeFile(name, data, out, func(v *Validator) {
		if validate != nil {
			*v = *validate()
		}
	})
}

func decodeFile(name string, data []byte, out any, validate func(*Validator)) error {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return ErrorList{{File: name, Message: "the file is empty"}}
		}
		return ErrorList{syntaxError(name, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return ErrorList{{File: name, Pos: Pos{extra.Line, extra.Column}, Message: "more than one YAML document: put one runbook in each file"}}
	}
	d := &decoder{file: name, positions: map[string]Pos{}}
	d.decode(&root, reflect.ValueOf(out).Elem(), "")
	if len(d.errs) > 0 {
		// Semantic checks on a half-decoded value would only add noise.
		return d.errs
	}
	var v Validator
	validate(&v)
	if len(v.problems) == 0 {
		return nil
	}
	errs := make(ErrorList, 0, len(v.problems))
	for _, p := range v.problems {
		errs = append(errs, &FieldError{File: name, Pos: d.closest(p.path), Path: p.path, Message: p.msg})
	}
	return errs
}

// closest finds the position of path or, for a field that is missing, of its nearest parent.
func (d *decoder) closest(path string) Pos {
	for {
		if p, ok := d.positions[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return d.positions[""]
		}
		path = path[:i]
	}
}

// syntaxError pulls yaml.v3's "yaml: line N: msg" apart so syntax errors are located like the rest.
func syntaxError(name string, err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		_, rest, _ := strings.Cut(msg, ": ")
		return &FieldError{File: name, Pos: Pos{Line: line, Column: 1}, Message: "YAML syntax: " + rest}
	}
	return &FieldError{File: name, Message: "YAML syntax: " + msg}
}

func typeOf(ptr any) reflect.Type { return reflect.TypeOf(ptr).Elem() }
