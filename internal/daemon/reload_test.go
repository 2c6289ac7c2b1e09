package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

const testRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: rb}
environment: {name: test, type: local}
experiments:
  - name: pause
    duration: 10s
    faults: [{processPause: {pidFile: /run/app.pid}}]
`

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A reload reports what changed and keeps what needs a restart; a refused one changes nothing and
// names each problem's position; the watch's hash follows the runbooks too.
func TestReloadDiffsAndRefuses(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "faultline.yaml")
	writeFile(t, filepath.Join(dir, "a.yaml"), testRunbook)
	writeFile(t, filepath.Join(dir, "b.yaml"), testRunbook)
	head := "apiVersion: faultline.dev/v1alpha1\nkind: DaemonConfig\n"
	writeFile(t, cfgPath, head+`schedules:
  - {name: keep, runbook: a.yaml, cron: "0 3 * * *"}
  - {name: change, runbook: a.yaml, cron: "0 4 * * *"}
  - {name: drop, runbook: b.yaml, cron: "0 5 * * *"}
`)
	lc, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	d := New(Options{Config: lc, ConfigPath: cfgPath})
	hash := d.lastHash

	writeFile(t, cfgPath, head+`api: {address: "127.0.0.1:9999"}
schedules:
  - {name: keep, runbook: a.yaml, cron: "0 3 * * *"}
  - {name: change, runbook: a.yaml, cron: "0 6 * * *"}
  - {name: add, runbook: b.yaml, cron: "0 7 * * *"}
`)
	if configHash(cfgPath) == hash {
		t.Fatal("the hash did not change with the config")
	}
	res, err := d.Reload(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Added, []string{"add"}) || !slices.Equal(res.Removed, []string{"drop"}) ||
		!slices.Equal(res.Changed, []string{"change"}) || !slices.Equal(res.Unchanged, []string{"keep"}) ||
		!slices.Equal(res.NeedsRestart, []string{"api"}) || len(res.RunbooksChanged) != 0 {
		t.Fatalf("reload result %+v", res)
	}
	if d.current() == lc || len(d.current().Schedules) != 3 || d.current().Compiled["add"] == nil {
		t.Fatal("the reloaded config is not in force")
	}

	// A runbook edit alone changes the hash and is reported.
	before := configHash(cfgPath)
	writeFile(t, filepath.Join(dir, "a.yaml"), testRunbook+"    # edited\n  - name: more\n    duration: 5s\n    faults: [{processPause: {pidFile: /run/app.pid}}]\n")
	if configHash(cfgPath) == before {
		t.Fatal("the hash did not change with a runbook")
	}
	res, err = d.Reload(context.Background(), "test")
	if err != nil || !slices.Equal(res.RunbooksChanged, []string{"keep", "change"}) {
		t.Fatalf("runbook change: %+v, %v", res, err)
	}

	inForce := d.current()
	writeFile(t, cfgPath, head+`schedules:
  - {name: keep, runbook: a.yaml, cron: "0 3 * * *"}
  - {name: bad, runbook: nowhere.yaml, cron: "61 * * * *"}
`)
	_, err = d.Reload(context.Background(), "test")
	var re *ReloadError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &re) || len(re.Problems) != 2 {
		t.Fatalf("invalid reload: %v, want ErrInvalid with two problems", err)
	}
	for _, p := range re.Problems {
		if p.Pos.Line != 5 || p.File != cfgPath {
			t.Errorf("problem %+v: want line 5 of %s", p, cfgPath)
		}
	}
	if d.current() != inForce {
		t.Fatal("a refused reload replaced the config in force")
	}
	if d.lastHash != configHash(cfgPath) {
		t.Fatal("the refused config's hash was not recorded: the watch would retry it every check")
	}
}
