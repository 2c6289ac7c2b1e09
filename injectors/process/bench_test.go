package process

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/testenv/local"
)

// BenchmarkRevert100Paused measures reverting a process-pause fault on 100 real processes from
// its ledger record, against a baseline measured in the same run: a bare loop of 100 SIGCONT
// syscalls with no identity checks. The ratio is what safety (pid-reuse checks, parallelism,
// record decoding) costs over the minimum possible.
func BenchmarkRevert100Paused(b *testing.B) {
	vs := local.StartVictims(b, 100)
	var rec pauseRecord
	for _, v := range vs {
		p, err := readProc(v.PID())
		if err != nil {
			b.Fatal(err)
		}
		rec.Procs = append(rec.Procs, p)
	}
	raw, _ := json.Marshal(rec)
	stopAll := func() {
		for _, p := range rec.Procs {
			_ = syscall.Kill(p.PID, syscall.SIGSTOP)
		}
	}

	b.Run("baseline-sigcont-loop", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			stopAll()
			b.StartTimer()
			for _, p := range rec.Procs {
				_ = syscall.Kill(p.PID, syscall.SIGCONT)
			}
		}
	})
	b.Run("revert", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			stopAll()
			b.StartTimer()
			if err := (Pause{}).Revert(context.Background(), raw, injectors.Env{}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		for _, v := range vs {
			if local.State(v.PID()) == "T" {
				b.Fatalf("pid %d still stopped after revert", v.PID())
			}
		}
	})
}
