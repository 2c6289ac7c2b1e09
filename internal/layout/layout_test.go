package layout

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/faultline-dev/faultline"

// forbidden says, for a package path prefix, which module paths it must not import. These are the
// rules docs/development.md states; the safety split exists so that injectors need only policy.
var forbidden = []struct{ from, to, why string }{
	{"injectors", "safety/guardrail", "injectors depend only on safety/policy"},
	{"injectors", "safety/ledger", "injectors depend only on safety/policy"},
	{"injectors", "experiments", "dependencies flow cmd → experiments → injectors"},
	{"injectors", "recorder", "dependencies flow cmd → recorder → injectors"},
	{"safety", "injectors", "safety/* sits below injectors"},
	{"safety", "experiments", "safety/* sits below experiments"},
	{"safety/policy", "safety/guardrail", "policy stands alone"},
	{"safety/policy", "safety/ledger", "policy stands alone"},
	{"runbooks", "safety", "runbooks is the bottom layer"},
	{"runbooks", "injectors", "runbooks is the bottom layer"},
	{"experiments", "cmd", "nothing imports the command"},
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", dir, err)
	}
	return dir
}

// packages lists the module's package directories (relative, slash-separated) with their imports
// of the module (relative too). Tests are left out: an external test package may import any layer
// (a benchmark drives the engine), and no cycle can come of it.
func packages(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != dir && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		if path != dir {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // a nested module (benchmarks against peers) is not part of this one
			}
		}
		pkg, err := build.ImportDir(path, build.ImportComment)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return nil // build-constrained out on this platform: nothing to check here
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		var imps []string
		for _, imp := range pkg.Imports {
			if r, ok := strings.CutPrefix(imp, module+"/"); ok {
				imps = append(imps, r)
			}
		}
		out[rel] = imps
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func TestLayout(t *testing.T) {
	dir := root(t)
	pkgs := packages(t, dir)
	if len(pkgs) < 20 {
		t.Fatalf("found only %d packages under %s: the walk is broken", len(pkgs), dir)
	}

	t.Run("dependencies flow one way", func(t *testing.T) {
		for p, imps := range pkgs {
			for _, imp := range imps {
				for _, f := range forbidden {
					if under(p, f.from) && under(imp, f.to) {
						t.Errorf("%s imports %s: %s (docs/development.md)", p, imp, f.why)
					}
				}
			}
		}
	})

	t.Run("the layout table covers every package", func(t *testing.T) {
		doc, err := os.ReadFile(filepath.Join(dir, "docs", "development.md"))
		if err != nil {
			t.Fatal(err)
		}
		var rows []string
		for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)/` \\|").FindAllStringSubmatch(string(doc), -1) {
			rows = append(rows, m[1])
		}
		if len(rows) < 5 {
			t.Fatalf("layout table not found in docs/development.md (rows %v)", rows)
		}
		for _, r := range rows {
			if st, err := os.Stat(filepath.Join(dir, r)); err != nil || !st.IsDir() {
				t.Errorf("docs/development.md lists %s/, which does not exist", r)
			}
		}
		for p := range pkgs {
			if p == "." {
				continue
			}
			covered := false
			for _, r := range rows {
				if under(p, r) {
					covered = true
					break
				}
			}
			if !covered {
				t.Errorf("package %s is under no path of docs/development.md's layout table", p)
			}
		}
	})
}
