package daemon

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// What the file watch costs per check (hashing the config and its runbooks), against a full
// load of the same files, which is what a reload does: the baseline the check is meant to avoid.
//
//	go test ./internal/daemon -run '^$' -bench 'WatchCheck|ReloadLoad' -benchtime 2000x
func benchConfig(b *testing.B) string {
	dir := b.TempDir()
	var sched strings.Builder
	for i := range 10 {
		writeFile(b, filepath.Join(dir, fmt.Sprintf("rb%d.yaml", i)), testRunbook)
		fmt.Fprintf(&sched, "  - {name: s%d, runbook: rb%d.yaml, cron: \"0 %d * * *\"}\n", i, i, i)
	}
	p := filepath.Join(dir, "faultline.yaml")
	writeFile(b, p, "apiVersion: faultline.dev/v1alpha1\nkind: DaemonConfig\nschedules:\n"+sched.String())
	return p
}

func BenchmarkWatchCheck(b *testing.B) {
	p := benchConfig(b)
	for b.Loop() {
		if configHash(p) == "" {
			b.Fatal("empty hash")
		}
	}
}

func BenchmarkReloadLoad(b *testing.B) {
	p := benchConfig(b)
	for b.Loop() {
		if _, err := LoadConfig(p); err != nil {
			b.Fatal(err)
		}
	}
}
