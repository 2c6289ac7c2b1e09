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
	pos, err := decodeFileAt(name, data, &rb, func(v *Validator) { *v = *rb.Validate() })
	if err != nil {
		return nil, err
	}
	for i := range rb.Experiments {
		for j := range rb.Experiments[i].Faults {
			path := fmt.Sprintf("experiments[%d].faults[%d]", i, j)
			rb.Experiments[i].Faults[j].at = &Source{File: name, Pos: pos[path], Path: path}
		}
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
	_, err := decodeFileAt(name, data, out, validate)
	return err
}

// decodeFileAt is decodeFile that also returns the position of every field path it decoded.
func decodeFileAt(name string, data []byte, out any, validate func(*Validator)) (map[string]Pos, error) {
	errs, pos := decodeErrors(name, data, out, validate)
	if len(errs) == 0 {
		return pos, nil
	}
	// yaml.v3 places what it meets at the end of the stream (an empty document, a missing value, a
	// syntax error) on a line after the last one; point at the last line instead.
	last := yamlLines(data)
	for _, e := range errs {
		if e.Pos.Line > last {
			e.Pos = Pos{Line: last, Column: 1}
		}
	}
	return nil, errs
}

func decodeErrors(name string, data []byte, out any, validate func(*Validator)) (ErrorList, map[string]Pos) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return ErrorList{{File: name, Message: "the file is empty"}}, nil
		}
		return ErrorList{syntaxError(name, err)}, nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return ErrorList{{File: name, Pos: Pos{extra.Line, extra.Column}, Message: "more than one YAML document: put one runbook in each file"}}, nil
	case !errors.Is(err, io.EOF):
		// A broken document after the first is still a broken file, not a valid one.
		return ErrorList{syntaxError(name, err)}, nil
	}
	d := &decoder{file: name, positions: map[string]Pos{}}
	d.decode(&root, reflect.ValueOf(out).Elem(), "")
	if len(d.errs) > 0 {
		// Semantic checks on a half-decoded value would only add noise.
		return d.errs, nil
	}
	var v Validator
	validate(&v)
	errs := make(ErrorList, 0, len(v.problems))
	for _, p := range v.problems {
		errs = append(errs, &FieldError{File: name, Pos: d.closest(p.path), Path: p.path, Message: p.msg})
	}
	if len(errs) > 0 {
		return errs, nil
	}
	return nil, d.positions
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
		if isYAMLParserProblem(rest) {
			line++
		}
		return &FieldError{File: name, Pos: Pos{Line: line, Column: 1}, Message: "YAML syntax: " + rest}
	}
	if isYAMLParserProblem(msg) {
		// yaml.v3 leaves the line out when it is the first (0 in its count).
		return &FieldError{File: name, Pos: Pos{Line: 1, Column: 1}, Message: "YAML syntax: " + msg}
	}
	return &FieldError{File: name, Message: "YAML syntax: " + msg}
}

// yamlLines counts the lines of data as YAML does: CR LF, CR, LF, NEL, LS and PS each end one.
func yamlLines(data []byte) int {
	n := 1
	for i := 0; i < len(data); i++ {
		switch {
		case data[i] == '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			n++
		case data[i] == '\n':
			n++
		case bytes.HasPrefix(data[i:], []byte("\u0085")), bytes.HasPrefix(data[i:], []byte("\u2028")), bytes.HasPrefix(data[i:], []byte("\u2029")):
			n++
		}
	}
	return n
}

// isYAMLParserProblem tells yaml.v3's parser messages from its scanner's. For the parser's it
// reports a 0-based line (of the construct being parsed, e.g. the line where an unclosed '{'
// opened), for the scanner's a 1-based one; without the correction every parser error pointed one
// line too early.
func isYAMLParserProblem(msg string) bool {
	switch msg {
	case "did not find expected <stream-start>", "did not find expected <document start>",
		"did not find expected node content", "did not find expected key", "did not find expected '-' indicator",
		"did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"found duplicate %YAML directive", "found duplicate %TAG directive",
		"found incompatible YAML document", "found undefined tag handle":
		return true
	}
	return false
}

func typeOf(ptr any) reflect.Type { return reflect.TypeOf(ptr).Elem() }
