package runbooks

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written the Go way in runbooks ("250ms", "1m30s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as 30s or 1m30s, got %s", describe(n))
	}
	if n.Tag == "!!int" && n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("invalid duration %q: use a number with a unit, such as 250ms, 30s, 5m or 1h", n.Value)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes durations as strings so result documents read like runbooks.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Threshold is how long a check must keep failing before it counts, written either as a count of
// consecutive failed evaluations (`for: 3`) or as a duration (`for: 5s`), like a Prometheus alert's `for`.
type Threshold struct {
	Count    int
	Duration time.Duration
}

func (t *Threshold) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a count (3) or a duration (5s), got %s", describe(n))
	}
	if n.Tag == "!!int" {
		c, err := strconv.Atoi(n.Value)
		if err != nil || c < 1 {
			return fmt.Errorf("invalid count %q: must be a whole number of at least 1", n.Value)
		}
		*t = Threshold{Count: c}
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil || v <= 0 {
		return fmt.Errorf("invalid value %q: expected a count of consecutive failures (3) or a positive duration (5s)", n.Value)
	}
	*t = Threshold{Duration: v}
	return nil
}

func (t Threshold) String() string {
	if t.Duration > 0 {
		return t.Duration.String()
	}
	if t.Count == 0 {
		return "1"
	}
	return strconv.Itoa(t.Count)
}

// MarshalJSON writes the form the user wrote.
func (t Threshold) MarshalJSON() ([]byte, error) {
	if t.Duration > 0 {
		return json.Marshal(t.Duration.String())
	}
	return json.Marshal(max(t.Count, 1))
}
