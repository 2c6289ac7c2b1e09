package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestScheduleNextRespectsBlackouts(t *testing.T) {
	out := faultline(t, t.TempDir(), "schedule", "-c", "../../runbooks/examples/daemon/faultline.yaml",
		"-n", "3", "--from", "2026-12-16T00:00:00Z", "-o", "json")
	if out.code != 0 {
		t.Fatalf("exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	var got []struct {
		Schedule string
		Starts   []time.Time
	}
	if err := json.Unmarshal([]byte(out.stdout), &got); err != nil {
		t.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	want := []time.Time{
		time.Date(2026, 12, 16, 10, 30, 0, 0, berlin),
		time.Date(2026, 12, 17, 10, 30, 0, 0, berlin),
		time.Date(2027, 1, 5, 10, 30, 0, 0, berlin), // 18 Dec – 4 Jan is the release freeze
	}
	for _, s := range got {
		if s.Schedule != "pause-worker-weekdays" {
			continue
		}
		if len(s.Starts) != len(want) {
			t.Fatalf("starts %v, want %v", s.Starts, want)
		}
		for i := range want {
			if !s.Starts[i].Equal(want[i]) {
				t.Fatalf("start %d = %s, want %s", i, s.Starts[i], want[i])
			}
		}
		return
	}
	t.Fatalf("schedule missing from %s", out.stdout)
}

func TestDaemonConfigErrorsHavePositions(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "faultline.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: faultline.dev/v1alpha1
kind: DaemonConfig
apii: {address: 127.0.0.1:0}
schedules:
  - name: a
    runbook: missing.yaml
    cron: "61 * * * *"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := faultline(t, dir, "schedule", "-c", cfg)
	if out.code != 4 {
		t.Fatalf("exit %d, want 4\n%s", out.code, out.stderr)
	}
	if !strings.Contains(out.stderr, "faultline.yaml:3:1: apii: unknown field \"apii\" (did you mean \"api\"?)") {
		t.Fatalf("stderr does not locate the unknown field:\n%s", out.stderr)
	}
}
