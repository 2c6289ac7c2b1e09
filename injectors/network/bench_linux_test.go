package network_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/runbooks"
)

func benchPeers(n int) []string {
	peers := make([]string, n)
	for i := range peers {
		peers[i] = fmt.Sprintf("10.201.%d.%d", i/250, i%250+1)
	}
	return peers
}

// BenchmarkRevert applies a partition with N rules (N egress peers) and reverts it, each iteration
// a fresh run; it reports the mean apply and revert times and their ratio. Revert is unhook +
// flush + delete in one iptables-restore transaction per family, so rules=1000 should cost about
// what rules=10 does.
//
//	go test ./injectors/network/ -run '^$' -bench 'Revert|PerRule' -benchtime 20x
func BenchmarkRevert(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			require(b)
			ctx := ctxFor(b, 10*time.Minute)
			ns := netns.New(b)
			baseline(b, ns)
			inj := injectorFor(b, network.KindPartition)
			peers := benchPeers(n)
			var apply, revert time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				env := injectors.Env{RunID: fmt.Sprintf("bench-%d-%d", n, i)}
				act, err := inj.Prepare(ctx, runbooks.Fault{Name: "bench", Partition: &runbooks.Partition{
					NetworkTarget: runbooks.NetworkTarget{Netns: ns.Name, Direction: "egress", Peers: peers}}}, env)
				if err != nil {
					b.Fatal(err)
				}
				rec, err := act.Record()
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := act.Apply(ctx, func(context.Context, json.RawMessage) error { return nil }); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if i == 0 {
					b.StopTimer()
					out, err := ns.Exec(ctx, "iptables", "-S", network.ChainName(env.RunID, "bench"))
					if err != nil {
						b.Fatal(err)
					}
					if got := strings.Count(string(out), "-j DROP"); got != n {
						b.Fatalf("chain has %d DROP rules, want %d", got, n)
					}
					b.StartTimer()
					t1 = time.Now()
				}
				if err := inj.Revert(ctx, rec, env); err != nil {
					b.Fatal(err)
				}
				revert += time.Since(t1)
				apply += t1.Sub(t0)
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
			b.ReportMetric(ms(apply), "apply-ms")
			b.ReportMetric(ms(revert), "revert-ms")
			b.ReportMetric(float64(revert)/float64(apply), "revert/apply")
		})
	}
}

// BenchmarkApplyPerRuleExec is the baseline for the choice of iptables-restore: the same 1,000
// rules appended one go-iptables call (one iptables exec) at a time.
func BenchmarkApplyPerRuleExec(b *testing.B) {
	require(b)
	ns := netns.New(b)
	peers := benchPeers(1000)
	var apply time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := ns.Do(func() error {
			ipt, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Timeout(10))
			if err != nil {
				return err
			}
			chain := network.ChainName("bench-per-rule", fmt.Sprint(i))
			t0 := time.Now()
			if err := ipt.NewChain("filter", chain); err != nil {
				return err
			}
			for _, p := range peers {
				if err := ipt.Append("filter", chain, "-d", p, "-j", "DROP"); err != nil {
					return err
				}
			}
			if err := ipt.Insert("filter", "OUTPUT", 1, "-j", chain); err != nil {
				return err
			}
			apply += time.Since(t0)
			if err := ipt.Delete("filter", "OUTPUT", "-j", chain); err != nil {
				return err
			}
			return ipt.ClearAndDeleteChain("filter", chain)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(apply)/float64(time.Millisecond)/float64(b.N), "apply-ms")
}

// BenchmarkPrepare is what every network fault costs before anything is applied: the checks of
// Prepare (the tools, leftovers of dead runs, the fault's own chain) in a namespace, against the
// apply and revert of the same one-rule partition measured in the same run.
//
//	go test ./injectors/network/ -run '^$' -bench Prepare -benchtime 50x
func BenchmarkPrepare(b *testing.B) {
	require(b)
	ctx := ctxFor(b, 10*time.Minute)
	ns := netns.New(b)
	baseline(b, ns)
	inj := injectorFor(b, network.KindPartition)
	fault := runbooks.Fault{Name: "bench", Partition: &runbooks.Partition{
		NetworkTarget: runbooks.NetworkTarget{Netns: ns.Name, Direction: "egress", Peers: benchPeers(1)}}}
	var prepare, applyRevert time.Duration
	i := 0
	for b.Loop() {
		env := injectors.Env{RunID: fmt.Sprintf("bench-prepare-%d", i)}
		i++
		t0 := time.Now()
		act, err := inj.Prepare(ctx, fault, env)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		rec, err := act.Record()
		if err != nil {
			b.Fatal(err)
		}
		if err := act.Apply(ctx, func(context.Context, json.RawMessage) error { return nil }); err != nil {
			b.Fatal(err)
		}
		if err := inj.Revert(ctx, rec, env); err != nil {
			b.Fatal(err)
		}
		prepare += t1.Sub(t0)
		applyRevert += time.Since(t1)
	}
	b.ReportMetric(float64(prepare.Microseconds())/float64(b.N)/1000, "prepare-ms")
	b.ReportMetric(float64(applyRevert.Microseconds())/float64(b.N)/1000, "apply+revert-ms")
	b.ReportMetric(float64(prepare)/float64(applyRevert), "prepare/apply+revert")
}
