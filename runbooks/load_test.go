package runbooks

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Each testdata/invalid-NAME.yaml has its expected errors in testdata/invalid-NAME.err, one
// `file:line:column: path: message` a line, in the order the loader reports them. After changing a
// message on purpose, rewrite them with
//
//	go test ./runbooks -run TestLoadInvalid -update-errors
//
// and read the diff: the files are the specification of what users see.
var updateErrors = flag.Bool("update-errors", false, "rewrite testdata/invalid-*.err from the loader's current output")

func TestLoadInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found %d invalid-*.yaml files, want at least 20", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(strings.TrimPrefix(name, "invalid-"), func(t *testing.T) {
			rb, err := Load(file)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want errors (decoded %+v)", file, rb)
			}
			if rb != nil {
				t.Errorf("Load returned a runbook with its error")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want an ErrorList: %v", err, err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			if *updateErrors {
				if err := os.WriteFile(golden, []byte(unionLists().toPlaceholders.Replace(got)), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			raw, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (write it with -update-errors, then review it)", err)
			}
			want := unionLists().fromPlaceholders.Replace(string(raw))
			if got != want {
				t.Errorf("Load(%s) errors differ from %s\n--- got\n%s--- want\n%s", file, golden, got, want)
			}
			for _, e := range list {
				if e.File != file || e.Message == "" {
					t.Errorf("malformed entry %#v", e)
				}
			}
		})
	}
}

// Union errors list every member ("a fault must set exactly one of: processKill, ..."). Golden
// files hold {fault-fields} and {probe-fields} instead, so that adding a fault kind or a probe does
// not change them.
type unionReplacers struct{ toPlaceholders, fromPlaceholders *strings.Replacer }

func unionLists() unionReplacers {
	faults, _ := FaultKinds()
	var probes []string
	for _, m := range members(reflect.TypeFor[Guardrail](), "probe") {
		probes = append(probes, m.field)
	}
	f, p := strings.Join(faults, ", "), strings.Join(probes, ", ")
	return unionReplacers{
		toPlaceholders:   strings.NewReplacer(f, "{fault-fields}", p, "{probe-fields}"),
		fromPlaceholders: strings.NewReplacer("{fault-fields}", f, "{probe-fields}", p),
	}
}

// TestLoadInvalidMultipleInOrder spells out the errors of the multiple-errors files here, not only in
// their golden files: every problem is reported, in file order, in one pass.
func TestLoadInvalidMultipleInOrder(t *testing.T) {
	cases := map[string][]string{
		"testdata/invalid-multiple-errors.yaml": {
			`testdata/invalid-multiple-errors.yaml:2:1: apiVersion: must be "faultline.dev/v1alpha1", got "faultline.dev/v1"`,
			`testdata/invalid-multiple-errors.yaml:5:3: metadata.name: is required: letters, digits, '.', '_' and '-', e.g. checkout-gameday`,
			`testdata/invalid-multiple-errors.yaml:7:3: environment.name: is required: name the environment this runbook may touch, e.g. staging-eu1`,
			`testdata/invalid-multiple-errors.yaml:8:3: environment.type: "production" is not allowed: faultline runs only against staging, golden-copy or local environments`,
			`testdata/invalid-multiple-errors.yaml:10:3: policy.maxTargets: must not be negative`,
			`testdata/invalid-multiple-errors.yaml:13:5: guardrails[0].interval: 10ms is too fast: the minimum is 250ms`,
			`testdata/invalid-multiple-errors.yaml:14:5: guardrails[0].onError: must be fail or ignore, got "retry"`,
			`testdata/invalid-multiple-errors.yaml:16:7: guardrails[0].http.url: "ftp://127.0.0.1/" is not an absolute http:// or https:// URL`,
			`testdata/invalid-multiple-errors.yaml:17:5: guardrails[1].name: duplicate guardrail name "web-up"`,
			`testdata/invalid-multiple-errors.yaml:17:5: guardrails[1]: a guardrail must set exactly one of: {probe-fields}`,
			`testdata/invalid-multiple-errors.yaml:20:5: experiments[0].duration: is required and must be positive, e.g. 30s`,
			`testdata/invalid-multiple-errors.yaml:21:5: experiments[0].faults: at least one fault is required`,
			`testdata/invalid-multiple-errors.yaml:26:11: experiments[1].faults[0].processKill.exe: "/usr/bin/sleep" must be an executable name, not a path (use pidFile for one process)`,
			`testdata/invalid-multiple-errors.yaml:27:11: experiments[1].faults[0].processKill.count: must not be negative`,
			`testdata/invalid-multiple-errors.yaml:28:11: experiments[1].faults[0].processKill.signal: "SIGSTOP" is not a supported signal (SIGABRT, SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2)`,
			`testdata/invalid-multiple-errors.yaml:29:9: experiments[1].faults[1].processPause: select processes with pidFile or exe`,
			`testdata/invalid-multiple-errors.yaml:31:7: experiments[1].recovery.within: is required and must be positive, e.g. 60s`,
		},
		"testdata/invalid-multiple-decode-errors.yaml": {
			`testdata/invalid-multiple-decode-errors.yaml:4:1: metdata: unknown field "metdata" (did you mean "metadata"?)`,
			`testdata/invalid-multiple-decode-errors.yaml:9:10: environment.hosts: expected a list, got a string "web-1"`,
			`testdata/invalid-multiple-decode-errors.yaml:12:15: experiments[0].duration: invalid duration "10 s": use a number with a unit, such as 250ms, 30s, 5m or 1h`,
			`testdata/invalid-multiple-decode-errors.yaml:16:18: experiments[0].faults[0].processKill.count: expected a whole number, got a number "1.5"`,
			`testdata/invalid-multiple-decode-errors.yaml:17:21: experiments[0].faults[0].processKill.interval: expected a duration such as 30s or 1m30s, got a list`,
			`testdata/invalid-multiple-decode-errors.yaml:18:17: experiments[0].pauseAfter: invalid duration "forever": use a number with a unit, such as 250ms, 30s, 5m or 1h`,
		},
	}
	for file, want := range cases {
		for i := range want {
			want[i] = unionLists().fromPlaceholders.Replace(want[i])
		}
		_, err := Load(file)
		var list ErrorList
		if !errors.As(err, &list) {
			t.Fatalf("Load(%s): %v, want an ErrorList", file, err)
		}
		var got []string
		for _, e := range list {
			got = append(got, e.Error())
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Load(%s):\n got: %s\nwant: %s", file, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
		}
	}
}

// TestLoadInvalidGoldenFilesHaveYAML catches a golden file left behind by a renamed case.
func TestLoadInvalidGoldenFilesHaveYAML(t *testing.T) {
	errs, _ := filepath.Glob("testdata/invalid-*.err")
	for _, e := range errs {
		if _, err := os.Stat(strings.TrimSuffix(e, ".err") + ".yaml"); err != nil {
			t.Errorf("%s has no .yaml beside it", e)
		}
	}
}

func TestLoadValidMinimal(t *testing.T) {
	rb := mustLoad(t, "testdata/valid-minimal.yaml")
	if rb.APIVersion != APIVersion || rb.Kind != "Runbook" || rb.Metadata.Name != "minimal" {
		t.Errorf("header = %q %q %q", rb.APIVersion, rb.Kind, rb.Metadata.Name)
	}
	if !reflect.DeepEqual(rb.Environment, Environment{Name: "local-test", Type: "local"}) {
		t.Errorf("environment = %+v", rb.Environment)
	}
	if rb.Policy.MaxTargets != 0 || len(rb.Guardrails) != 0 {
		t.Errorf("policy %+v, guardrails %+v: want zero values", rb.Policy, rb.Guardrails)
	}
	if len(rb.Experiments) != 1 {
		t.Fatalf("%d experiments, want 1", len(rb.Experiments))
	}
	x := rb.Experiments[0]
	if x.Name != "pause" || x.Duration.D() != 30*time.Second || x.PauseAfter != 0 || x.Recovery != nil || x.Hypothesis != nil {
		t.Errorf("experiment = %+v", x)
	}
	if len(x.Faults) != 1 {
		t.Fatalf("%d faults, want 1", len(x.Faults))
	}
	f := x.Faults[0]
	if f.Name != "process-pause-0" || f.Kind() != "process-pause" {
		t.Errorf("fault name %q kind %q, want the default name process-pause-0", f.Name, f.Kind())
	}
	if p, ok := f.Spec().(*ProcessPause); !ok || p.Exe != "sleep" || p.PidFile != "" || p.Count != 0 || p.Percent != 0 {
		t.Errorf("spec = %#v", f.Spec())
	}
}

func TestLoadValidFull(t *testing.T) {
	rb := mustLoad(t, "testdata/valid-full.yaml")
	md := rb.Metadata
	if md.Name != "checkout-gameday" || md.Owner != "payments-team" || !strings.HasPrefix(md.Description, "Checkout keeps") {
		t.Errorf("metadata = %+v", md)
	}
	if !reflect.DeepEqual(md.Labels, map[string]string{"team": "payments", "version": "1.10"}) {
		t.Errorf("labels = %v", md.Labels)
	}
	if !reflect.DeepEqual(rb.Environment, Environment{Name: "staging-eu1", Type: "staging", Hosts: []string{"web-*", "worker-1"}}) {
		t.Errorf("environment = %+v", rb.Environment)
	}
	if rb.Policy.MaxTargets != 3 {
		t.Errorf("maxTargets = %d", rb.Policy.MaxTargets)
	}

	if len(rb.Guardrails) != 2 {
		t.Fatalf("%d guardrails, want 2", len(rb.Guardrails))
	}
	g := rb.Guardrails[0]
	if g.Name != "checkout-up" || g.Interval.D() != 90*time.Second || g.For != (Threshold{Count: 3}) || g.OnError != "ignore" || g.ProbeKind() != "http" {
		t.Errorf("guardrail = %+v", g)
	}
	wantHTTP := &HTTPProbe{
		URL:                "https://checkout.staging.example:8443/healthz",
		Method:             "post",
		Headers:            map[string]string{"Authorization": "Bearer token"},
		Body:               `{"probe": true}`,
		ExpectStatus:       []string{"200", "2xx", "300-302"},
		MaxLatency:         Duration(250 * time.Millisecond),
		Timeout:            Duration(2 * time.Second),
		InsecureSkipVerify: true,
	}
	if !reflect.DeepEqual(g.Probe(), wantHTTP) {
		t.Errorf("http probe = %+v\nwant %+v", g.Probe(), wantHTTP)
	}
	g = rb.Guardrails[1]
	if g.Interval != 0 || g.For != (Threshold{Duration: 5 * time.Second}) || g.For.String() != "5s" || g.OnError != "" {
		t.Errorf("guardrail with defaults = %+v", g)
	}

	if len(rb.Experiments) != 2 {
		t.Fatalf("%d experiments, want 2", len(rb.Experiments))
	}
	x := rb.Experiments[0]
	if x.Duration.D() != 90*time.Minute || x.PauseAfter.D() != time.Minute || x.Recovery == nil || x.Recovery.Within.D() != 45*time.Second {
		t.Errorf("experiment = %+v", x)
	}
	var names, kinds []string
	for _, f := range x.Faults {
		names = append(names, f.Name)
		kinds = append(kinds, f.Kind())
	}
	// Default names use the kind and the fault's index in the experiment.
	if want := []string{"process-kill-0", "freeze-one", "process-kill-2"}; !reflect.DeepEqual(names, want) {
		t.Errorf("fault names = %q, want %q", names, want)
	}
	if want := []string{"process-kill", "process-pause", "process-kill"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("fault kinds = %q, want %q", kinds, want)
	}
	if k := x.Faults[0].ProcessKill; k.Exe != "worker" || k.Percent != 50 || k.Signal != "term" || k.Interval != 0 {
		t.Errorf("processKill = %+v", k)
	}
	if k := x.Faults[2].ProcessKill; k.Exe != "sleep" || k.Count != 2 || k.Signal != "" {
		t.Errorf("processKill = %+v", k)
	}
	if p := x.Faults[1].ProcessPause; p.PidFile != "/run/worker.pid" {
		t.Errorf("processPause = %+v", p)
	}
	if len(x.Hypothesis) != 1 {
		t.Fatalf("hypothesis = %+v", x.Hypothesis)
	}
	if h := x.Hypothesis[0]; h.Interval.D() != MinInterval || h.For != (Threshold{Duration: 2 * time.Minute}) || h.OnError != "fail" || h.HTTP.MaxLatency.D() != time.Second {
		t.Errorf("hypothesis = %+v", h)
	}
	x = rb.Experiments[1]
	if x.Duration.D() != 500*time.Millisecond || x.PauseAfter != 0 || x.Faults[0].Name != "process-pause-0" {
		t.Errorf("experiment = %+v", x)
	}
}

func TestLoadValidAnchors(t *testing.T) {
	rb := mustLoad(t, "testdata/valid-anchors.yaml")
	h := rb.Experiments[0].Hypothesis
	if len(h) != 1 || h[0].Name != "web-up" || h[0].HTTP == nil || h[0].HTTP.URL != "http://127.0.0.1:18080/" {
		t.Errorf("aliased guardrail = %+v", h)
	}
	second := rb.Experiments[1].Faults
	if len(second) != 2 || second[0].Name != "process-pause-0" || second[1].Name != "process-pause-1" {
		t.Fatalf("aliased faults = %+v", second)
	}
	// An alias is decoded into a value of its own each time it is used.
	if second[0].ProcessPause == second[1].ProcessPause || second[0].ProcessPause.PidFile != "/tmp/worker.pid" {
		t.Errorf("aliased faults share or lost their spec: %+v %+v", second[0].ProcessPause, second[1].ProcessPause)
	}
}

func TestLoadValidNullValues(t *testing.T) {
	rb := mustLoad(t, "testdata/valid-null-values.yaml")
	want := &Runbook{
		APIVersion:  APIVersion,
		Kind:        "Runbook",
		Metadata:    Metadata{Name: "nulls"},
		Environment: Environment{Name: "local-test", Type: "local"},
		Experiments: []Experiment{{
			Name:     "pause",
			Duration: Duration(10 * time.Second),
			Faults: []Fault{{Name: "process-pause-0", ProcessPause: &ProcessPause{ProcessTarget: ProcessTarget{Exe: "sleep"}},
				// The loader keeps where the fault is, for errors only the live system can find.
				at: &Source{File: "testdata/valid-null-values.yaml", Pos: Pos{Line: 20, Column: 9}, Path: "experiments[0].faults[0]"}}},
		}},
	}
	if !reflect.DeepEqual(rb, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", rb, want)
	}
}

// TestLoadValidFiles loads every valid-*.yaml (including any added later without a test of its own).
func TestLoadValidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid-*.yaml")
	if len(files) < 3 {
		t.Fatalf("found %d valid-*.yaml files", len(files))
	}
	for _, f := range files {
		mustLoad(t, f)
	}
}

func TestLoadExamples(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples/*.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			rb := mustLoad(t, f)
			if len(rb.Experiments) == 0 {
				t.Errorf("example has no experiments")
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

// TestParseOrderAndPositions checks details the golden files cannot show at a glance: positions
// are 1-based, point at the key of a field (not its value), and the name given to Parse is the file.
func TestParseOrderAndPositions(t *testing.T) {
	src := "apiVersion: faultline.dev/v1alpha1\nkind: Runbook\nmetadata: {name: p}\nenvironment: {name: e, type: local}\n" +
		"experiments:\n  - name: x\n    duration: 1s\n    faults:\n      - processKill:\n          exe: sleep\n          percent:   101\n"
	_, err := Parse("mem.yaml", []byte(src))
	want := "mem.yaml:11:11: experiments[0].faults[0].processKill.percent: must be between 0 and 100, got 101"
	if err == nil || err.Error() != want {
		t.Errorf("Parse: %v\nwant %s", err, want)
	}
}

func TestDecodeStrict(t *testing.T) {
	type config struct {
		Listen  string   `yaml:"listen"`
		Timeout Duration `yaml:"timeout,omitempty"`
	}
	var c config
	err := DecodeStrict("c.yaml", []byte("listen: 127.0.0.1:8080\ntimeout: 2s\n"), &c, nil)
	if err != nil || c.Listen != "127.0.0.1:8080" || c.Timeout.D() != 2*time.Second {
		t.Fatalf("DecodeStrict = %v, %+v", err, c)
	}
	err = DecodeStrict("c.yaml", []byte("listen: a\nlisen: b\n"), &c, func() *Validator {
		v := &Validator{}
		v.Errorf("listen", "never reached: decoding failed")
		return v
	})
	if err == nil || err.Error() != `c.yaml:2:1: lisen: unknown field "lisen" (did you mean "listen"?)` {
		t.Errorf("DecodeStrict: %v", err)
	}
	err = DecodeStrict("c.yaml", []byte("listen: a\n"), &c, func() *Validator {
		v := &Validator{}
		v.Errorf("listen", "is taken")
		v.Errorf("timeout", "is missing")
		return v
	})
	if err == nil || err.Error() != "c.yaml:1:1: listen: is taken\nc.yaml:1:1: timeout: is missing" {
		t.Errorf("DecodeStrict validation: %v", err)
	}
}

func mustLoad(t *testing.T, file string) *Runbook {
	t.Helper()
	rb, err := Load(file)
	if err != nil {
		t.Fatalf("Load(%s):\n%v", file, err)
	}
	return rb
}

// TestDocsRunbookExamples keeps docs/runbook.md honest: its first example is a valid runbook, and
// the error listing it shows is what the loader prints for the example above it.
func TestDocsRunbookExamples(t *testing.T) {
	md, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	// The error example is fenced ```yaml invalid (the docs test checks that it fails).
	blocks := regexp.MustCompile("(?s)```(yaml)?(?: invalid)?\n(.*?)```").FindAllStringSubmatch(string(md), -1)
	var runbooks []string
	for _, b := range blocks {
		if b[1] == "yaml" && strings.Contains(b[2], "apiVersion: ") {
			runbooks = append(runbooks, b[2])
		}
	}
	if len(runbooks) != 2 {
		t.Fatalf("found %d complete runbooks in docs/runbook.md, want 2 (the overview and the error example)", len(runbooks))
	}
	if _, err := Parse("overview.yaml", []byte(runbooks[0])); err != nil {
		t.Errorf("the first example in docs/runbook.md does not load:\n%v", err)
	}
	_, err = Parse("checkout.yaml", []byte(runbooks[1]))
	if err == nil {
		t.Fatal("the error example in docs/runbook.md loads without error")
	}
	want := err.Error() + "\n"
	found := false
	for _, b := range blocks {
		found = found || (b[1] == "" && b[2] == want)
	}
	if !found {
		t.Errorf("docs/runbook.md does not show the loader's output for its error example:\n%s", want)
	}
}

// TestParseSyntaxErrorLines pins the line of YAML syntax errors: yaml.v3 counts its parser's lines
// from 0 and its scanner's from 1, and the loader reports both 1-based.
func TestParseSyntaxErrorLines(t *testing.T) {
	cases := []struct{ src, want string }{
		{"a: 1\nb: 2\nc: {x: 1\nd: 2\n", "s.yaml:3:1: YAML syntax: did not find expected ',' or '}'"},        // parser, unclosed '{' on line 3
		{"a: 1\nb: 2\nc: [x\nd: 2\n", "s.yaml:3:1: YAML syntax: did not find expected ',' or ']'"},           // parser
		{"a: 1\nb: 2\n- x\n", "s.yaml:3:1: YAML syntax: did not find expected key"},                          // parser, context on line 1
		{"a: 1\nb: 2\nc: d: e\n", "s.yaml:3:1: YAML syntax: mapping values are not allowed in this context"}, // scanner
		{"a: 1\nb: 2\nc:\n\t- x\n", "s.yaml:4:1: YAML syntax: found character that cannot start any token"},  // scanner
		{"- a\nb: 1\n", "s.yaml:2:1: YAML syntax: did not find expected '-' indicator"},                      // parser, problem on line 2
		{"{a: 1", "s.yaml:1:1: YAML syntax: did not find expected ',' or '}'"},                               // parser, no line: yaml.v3's line 0
		{"a: *nope\n", "s.yaml: YAML syntax: unknown anchor 'nope' referenced"},                              // no line from yaml.v3
	}
	for _, c := range cases {
		_, err := Parse("s.yaml", []byte(c.src))
		if err == nil || err.Error() != c.want {
			t.Errorf("Parse(%q):\n got %v\nwant %s", c.src, err, c.want)
		}
	}
}
