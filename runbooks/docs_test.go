package runbooks_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/faultline-dev/faultline/internal/daemon"
	"github.com/faultline-dev/faultline/runbooks"
)

// Every YAML example in the README and docs/ is validated, so that the docs cannot drift from the
// loader. A block is a whole runbook or daemon config, or a fragment that this test places where
// its first key says it belongs in a minimal runbook.
func TestDocsYAMLExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	block := regexp.MustCompile("(?s)```ya?ml( invalid)?\n(.*?)```")
	// CI pipelines (docs/ci.md) are fenced ```yaml ci: not faultline's to validate, but they must
	// at least be YAML.
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile("(?s)```yaml ci\n(.*?)```").FindAllSubmatch(b, -1) {
			var v any
			if err := yaml.Unmarshal(m[1], &v); err != nil {
				t.Errorf("%s: a CI example is not YAML: %v", f, err)
			}
		}
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllSubmatchIndex(b, -1) {
			n++
			text := string(b[m[4]:m[5]])
			line := strings.Count(string(b[:m[4]]), "\n") + 1
			name := filepath.Base(f) + ":" + strconv.Itoa(line)
			err := validateDocBlock(t, name, text)
			if m[2] >= 0 { // ```yaml invalid: an example of what validate reports
				if err == nil {
					t.Errorf("%s: the example marked invalid is valid", filepath.Join("docs", name))
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: the YAML example is not valid:\n%v\n--- block ---\n%s", filepath.Join("docs", name), err, text)
			}
		}
	}
	if n < 20 {
		t.Fatalf("found %d YAML blocks in %v, fewer than the docs hold: is the extraction broken?", n, files)
	}
}

const docHeader = "apiVersion: faultline.dev/v1alpha1\nkind: Runbook\nmetadata: {name: docs}\n"

// The environment pins a cluster and names the agents because fragments with Kubernetes and pod
// network faults need them.
const docEnv = "environment: {name: docs, type: staging, kubernetes: {clusterID: 0b6a4b4e-0000-4000-8000-000000000000, agent: {tls: {caFile: ca.pem, certFile: run.pem, keyFile: run-key.pem}}},\n  agents: {tls: {caFile: ca.pem, certFile: run.pem, keyFile: run-key.pem}, hosts: [{name: golden-db-1, address: 10.0.3.17}, {name: golden-app-1, address: 10.0.3.21}]}}\n"
const docExperiment = "experiments:\n  - name: x\n    duration: 10s\n    faults: [{processPause: {pidFile: /run/app.pid}}]\n"

func validateDocBlock(t *testing.T, name, text string) error {
	t.Helper()
	first := ""
	for _, l := range strings.Split(text, "\n") {
		if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
			first, _, _ = strings.Cut(s, ":")
			first = strings.TrimSpace(first)
			break
		}
	}
	var doc string
	switch first {
	case "":
		return nil // only comments (the editor modeline)
	case "apiVersion":
		if !strings.Contains(text, "faultline.dev/") {
			var v any // a Kubernetes manifest: not faultline's to validate, but YAML
			return yaml.Unmarshal([]byte(text), &v)
		}
		if strings.Contains(text, "kind: DaemonConfig") {
			return validateDaemonConfig(t, text)
		}
		doc = text
	case "load":
		if !strings.Contains(text, "targets") { // the load guardrail, not the runbook's load
			doc = docHeader + docEnv + "load: {targets: [{url: \"http://127.0.0.1:8080/\"}], rate: 10}\nguardrails:\n  - name: g\n" + indent(text, "    ") + docExperiment
			break
		}
		doc = docHeader + docEnv + text + "\n" + docExperiment
	case "baseline", "objectives":
		doc = docHeader + docEnv + text + "\n"
		if !strings.Contains(text, "\nexperiments:") {
			doc += docExperiment
		}
	case "record":
		doc = docHeader + docEnv + docExperiment + indent(dedent(text), "    ")
	case "- preset":
		doc = docHeader + docEnv + docExperiment + "    record:\n      breakers:\n" + indent(dedent(text), "        ")
	case "guardrails", "policy":
		doc = docHeader + docEnv + text + "\n"
		if !strings.Contains(text, "\nexperiments:") {
			doc += docExperiment
		}
	case "environment":
		doc = docHeader + text + "\n" + docExperiment
	case "experiments":
		doc = docHeader + docEnv + text
	case "http", "prometheus", "kubernetes", "slo":
		doc = docHeader + docEnv + "guardrails:\n  - name: g\n" + indent(text, "    ") + docExperiment
	case "faults":
		doc = docHeader + docEnv + "experiments:\n  - name: x\n    duration: 10s\n" + indent(text, "    ")
	default: // a fault kind: podKill, proxy, proxyToxics, ...
		doc = docHeader + docEnv + "experiments:\n  - name: x\n    duration: 10s\n    faults:\n      -\n" + indent(text, "        ")
	}
	_, err := runbooks.Parse(name, []byte(doc))
	return err
}

func validateDaemonConfig(t *testing.T, text string) error {
	t.Helper()
	// The config names runbook files relative to itself; give it empty-but-valid ones.
	dir := t.TempDir()
	for _, m := range regexp.MustCompile(`runbook:\s*(\S+)`).FindAllStringSubmatch(text, -1) {
		p := filepath.Join(dir, m[1])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(docHeader+docEnv+docExperiment), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// And the files it reads secrets from (history.postgres.dsnFile).
	for _, m := range regexp.MustCompile(`dsnFile:\s*(\S+)`).FindAllStringSubmatch(text, -1) {
		p := filepath.Join(dir, m[1])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("postgres://faultline@127.0.0.1/faultline\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "faultline.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := daemon.LoadConfig(path)
	return err
}

func indent(s, by string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if l != "" {
			b.WriteString(by)
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// dedent removes the indentation of the first line from every line (a fragment copied from
// inside a runbook).
func dedent(text string) string {
	lines := strings.Split(text, "\n")
	pad := ""
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			pad = l[:len(l)-len(strings.TrimLeft(l, " "))]
			break
		}
	}
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, pad)
	}
	return strings.Join(lines, "\n")
}
