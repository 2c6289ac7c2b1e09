package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/faultline-dev/faultline/experiments"
)

// The JUnit XML subset that Jenkins (junit plugin), GitLab (artifacts:reports:junit) and GitHub
// test-report actions all read: testsuites > testsuite > testcase with failure, error or skipped,
// properties on the suite and system-out.

// JUnitSuites is the document root.
type JUnitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite is one run.
type JUnitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr,omitempty"`
	Properties []JUnitProperty `xml:"properties>property"`
	Cases      []JUnitCase     `xml:"testcase"`
	SystemOut  string          `xml:"system-out"`
}

// JUnitProperty is a name/value pair of a suite.
type JUnitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// JUnitCase is one experiment, objective or baseline figure.
type JUnitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *JUnitProblem `xml:"failure"`
	Error     *JUnitProblem `xml:"error"`
	Skipped   *JUnitProblem `xml:"skipped"`
	SystemOut string        `xml:"system-out,omitempty"`
}

// JUnitProblem is a failure, error or skip: message is the reason, type the verdict.
type JUnitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// JUnit writes one testsuite per run.
func JUnit(w io.Writer, results ...*experiments.Result) error {
	doc := JUnitSuites{Name: "faultline"}
	var total float64
	for _, res := range results {
		s := junitSuite(res)
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		doc.Skipped += s.Skipped
		total += res.EndedAt.Sub(res.StartedAt).Seconds()
		doc.Suites = append(doc.Suites, s)
	}
	doc.Time = secs(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func secs(s float64) string { return fmt.Sprintf("%.3f", max(0, s)) }

func junitSuite(res *experiments.Result) JUnitSuite {
	s := JUnitSuite{
		Name:      "faultline " + res.Runbook + " (" + res.Environment + ")",
		Time:      secs(res.EndedAt.Sub(res.StartedAt).Seconds()),
		Timestamp: res.StartedAt.UTC().Format("2006-01-02T15:04:05"),
		Properties: []JUnitProperty{
			{"runId", res.RunID}, {"runbook", res.Runbook}, {"environment", res.Environment},
			{"verdict", string(res.Verdict)}, {"exitCode", fmt.Sprint(res.ExitCode)},
			{"runbookDigest", res.RunbookDigest}, {"faultlineVersion", res.FaultlineVersion},
		},
	}
	if id := res.Identity; id != nil {
		s.Hostname = id.Host
		if id.ClusterID != "" {
			s.Properties = append(s.Properties, JUnitProperty{"clusterId", id.ClusterID})
		}
	}
	if res.Baseline != nil {
		s.Properties = append(s.Properties, JUnitProperty{"baselineRunId", res.Baseline.BaselineRunID})
	}
	var text strings.Builder
	_ = Text(&text, res)
	s.SystemOut = text.String()
	class := "faultline." + res.Runbook
	ran := map[string]bool{}
	for i := range res.Experiments {
		x := &res.Experiments[i]
		ran[x.Name] = true
		c := JUnitCase{Name: x.Name, Classname: class, Time: secs(x.EndedAt.Sub(x.StartedAt).Seconds())}
		p := &JUnitProblem{Message: x.Reason, Type: string(x.Verdict), Text: x.Reason}
		if p.Message == "" {
			p.Message = string(x.Verdict)
		}
		switch x.Verdict {
		case experiments.Passed:
		case experiments.Failed, experiments.Halted:
			c.Failure = p
		case experiments.DryRun:
			c.Skipped = p
		default:
			c.Error = p
		}
		s.Cases = append(s.Cases, c)
		for _, o := range x.Objectives {
			name := x.Name + " / " + o.Name
			if o.Figure != "" {
				name += " [" + o.Figure + "]"
			}
			oc := JUnitCase{Name: name, Classname: class + "." + x.Name, Time: "0.000", SystemOut: fmt.Sprintf("value %s, limit %s", o.Value, o.Limit)}
			if !o.Passed {
				msg := o.Reason
				if msg == "" {
					msg = fmt.Sprintf("%s: %s exceeds %s", o.Name, o.Value, o.Limit)
				}
				oc.Failure = &JUnitProblem{Message: msg, Type: "objective", Text: msg}
			}
			s.Cases = append(s.Cases, oc)
		}
		if c := res.Baseline; c != nil {
			for _, ed := range c.Experiments {
				if ed.Name != x.Name {
					continue
				}
				for _, f := range ed.Figures {
					if !f.Failing() {
						continue
					}
					msg := fmt.Sprintf("%s %s: %s (tolerance %s)", f.Key, f.Status, f.Detail, f.Tolerance)
					s.Cases = append(s.Cases, JUnitCase{Name: x.Name + " / baseline [" + f.Key + "]", Classname: class + "." + x.Name, Time: "0.000",
						Failure: &JUnitProblem{Message: msg, Type: "baseline-" + f.Status, Text: msg}})
				}
			}
		}
	}
	for _, name := range res.ExperimentNames {
		if ran[name] {
			continue
		}
		msg := "not reached: the run ended " + string(res.Verdict) + " before it"
		s.Cases = append(s.Cases, JUnitCase{Name: name, Classname: class, Time: "0.000", Skipped: &JUnitProblem{Message: msg, Text: msg}})
	}
	// A run that ended before any experiment (refused, not started) is still one failing case,
	// so that the CI job shows why.
	if len(res.Experiments) == 0 && res.Verdict != experiments.Passed && res.Verdict != experiments.DryRun {
		msg := res.Reason
		if msg == "" {
			msg = string(res.Verdict)
		}
		s.Cases = append(s.Cases, JUnitCase{Name: "run", Classname: class, Time: s.Time, Error: &JUnitProblem{Message: msg, Type: string(res.Verdict), Text: msg}})
	}
	for _, c := range s.Cases {
		s.Tests++
		switch {
		case c.Failure != nil:
			s.Failures++
		case c.Error != nil:
			s.Errors++
		case c.Skipped != nil:
			s.Skipped++
		}
	}
	return s
}
