package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/faultline-dev/faultline/experiments"
)

// Formats are the report formats, as --format and ?format= spell them.
var Formats = []string{"html", "junit", "markdown", "text"}

// ContentType is the media type of a format, for the daemon's API.
func ContentType(format string) string {
	switch format {
	case "html":
		return "text/html; charset=utf-8"
	case "junit":
		return "application/xml; charset=utf-8"
	case "markdown":
		return "text/markdown; charset=utf-8"
	}
	return "text/plain; charset=utf-8"
}

// CheckFormat returns an error naming the formats when format is not one of them.
func CheckFormat(format string) error {
	for _, f := range Formats {
		if f == format {
			return nil
		}
	}
	return fmt.Errorf("unknown report format %q: use one of %s", format, strings.Join(Formats, ", "))
}

// Write writes the report of results in format.
func Write(w io.Writer, format string, results ...*experiments.Result) error {
	switch format {
	case "html":
		return HTML(w, results...)
	case "junit":
		return JUnit(w, results...)
	case "markdown":
		return Markdown(w, results...)
	case "text":
		for _, r := range results {
			if err := Text(w, r); err != nil {
				return err
			}
		}
		return nil
	}
	return CheckFormat(format)
}
