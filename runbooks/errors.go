package runbooks

import (
	"fmt"
	"strings"
)

// Pos is a 1-based position in a runbook file.
type Pos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// FieldError is one problem in a runbook, located so that an editor can jump to it.
type FieldError struct {
	File string `json:"file"`
	Pos  Pos    `json:"pos"`
	// Path is the field's path, e.g. experiments[0].faults[1].processKill.count.
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (e *FieldError) Error() string {
	loc := e.File
	if e.Pos.Line > 0 {
		loc = fmt.Sprintf("%s:%d:%d", e.File, e.Pos.Line, e.Pos.Column)
	}
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", loc, e.Message)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Path, e.Message)
}

// ErrorList is every problem found in one file; decoding and validation report all of them at once
// so that a user fixes a runbook in one round trip, not one error at a time.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap lets errors.As find an individual *FieldError.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}
