//go:build linux

package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
)

// Records written before the namespace identity was kept still decode, into the namespace that
// version would have reverted in.
func TestLatencyDecodesFirstFormatRecords(t *testing.T) {
	for _, c := range []struct {
		record string
		want   network.Target
	}{
		{`{"id":"FAULTLINE-1","ns":{"netns":"pod-a"},"mechanism":"proxy","chain":"FAULTLINE-1","families":["ipv4"],"port":41000,"pid":7}`,
			network.Target{Label: "pod-a", Path: filepath.Join(network.DefaultNetnsDir, "pod-a")}},
		{`{"id":"FAULTLINE-2","ns":{"netnsPath":"/proc/4242/ns/net"},"mechanism":"proxy","chain":"FAULTLINE-2"}`,
			network.Target{Label: "/proc/4242/ns/net", Path: "/proc/4242/ns/net"}},
		{`{"id":"FAULTLINE-3","ns":{},"mechanism":"netem","interfaces":["eth0"]}`,
			network.Target{Label: "host"}},
	} {
		rec, err := decodeLatencyRecord(json.RawMessage(c.record))
		if err != nil {
			t.Fatalf("%s: %v", c.record, err)
		}
		if !targetsEqual(rec.Target, c.want) || rec.NS != nil {
			t.Errorf("%s decoded to target %+v (ns %+v), want %+v", c.record, rec.Target, rec.NS, c.want)
		}
	}
	rec, err := decodeLatencyRecord(json.RawMessage(`{"id":"FAULTLINE-1","ns":{"netns":"pod-a"},"mechanism":"proxy","chain":"FAULTLINE-1","port":41000}`))
	if err != nil || rec.Chain != "FAULTLINE-1" || rec.Port != 41000 || rec.Mechanism != MechanismProxy {
		t.Errorf("first-format record lost its other fields: %+v (%v)", rec, err)
	}
	for _, bad := range []string{
		`{"id":"FAULTLINE-4","mechanism":"proxy","chain":"FAULTLINE-4"}`,                                  // first format without a namespace
		`{"version":99,"id":"FAULTLINE-5","target":{"netns":"host","netnsID":"1:2"},"mechanism":"proxy"}`, // from a newer faultline
		`{"id":`,
	} {
		if _, err := decodeLatencyRecord(json.RawMessage(bad)); err == nil {
			t.Errorf("%s decoded without error", bad)
		}
	}
}

func targetsEqual(a, b network.Target) bool {
	return a.Label == b.Label && a.Path == b.Path && a.ID == b.ID && slices.Equal(a.Aliases, b.Aliases)
}

// A record in the first format, as the previous version left it in the ledger of a crashed run,
// is reverted by this version: the chain goes, connections go direct.
func TestLatencyRevertsFirstFormatRecord(t *testing.T) {
	requireNet(t)
	for _, by := range []string{"name", "path"} {
		t.Run(by, func(t *testing.T) {
			l := netns.NewPair(t)
			port := echoIn(t, l.B, l.B4)
			server := netip.AddrPortFrom(l.B4, port)
			before := natSnapshot(t, l.A)
			env := injectors.Env{RunID: "first-format"}
			act := apply(t, NewLatencyInjector(), latencyFault("lat", l.A, "egress", l.B4, port, 40*time.Millisecond, 0, ""), env)
			if m := act.(injectors.MechanismReporter).Mechanism(); m != MechanismProxy {
				t.Fatalf("Mechanism() = %q, want %s", m, MechanismProxy)
			}
			raw, err := act.Record()
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]any
			if err := json.Unmarshal(raw, &fields); err != nil {
				t.Fatal(err)
			}
			delete(fields, "version")
			delete(fields, "target")
			fields["ns"] = map[string]string{"netns": l.A.Name}
			if by == "path" {
				fields["ns"] = map[string]string{"netnsPath": l.A.Path}
			}
			old, err := json.Marshal(fields)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if ok, err := hasChain(ctx, l.A, chainName(env.RunID, "lat")); err != nil || !ok {
				t.Fatalf("chain not applied: %v %v", ok, err)
			}
			if err := NewLatencyInjector().Revert(ctx, old, env); err != nil {
				t.Fatalf("Revert of %s: %v", old, err)
			}
			if after := natSnapshot(t, l.A); after != before {
				t.Fatalf("nat tables after reverting %s differ:\n--- before\n%s--- after\n%s", old, before, after)
			}
			ds := rtts(t, dialIn(t, l.A, server), 10, 5*time.Second)
			slices.Sort(ds)
			if m := percentile(ds, 0.5); m > 10*time.Millisecond {
				t.Fatalf("round trip %s after the first-format revert: still redirected", m)
			}
		})
	}
}

// startIn starts `sleep` in ns and returns its /proc/PID/ns/net path and the process.
func startIn(t *testing.T, ns *netns.NS) (string, *exec.Cmd) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var proc *exec.Cmd
	if err := ns.Do(func() error {
		proc = exec.CommandContext(ctx, "sleep", "120")
		return proc.Start() // forked from a thread inside ns, so the process lives there
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	return "/proc/" + strconv.Itoa(proc.Process.Pid) + "/ns/net", proc
}

// A fault applied by /proc/PID/ns/net stays in force when that process exits while the
// namespace lives on (here through its ip-netns bind mount, as through a pause container), and a
// revert from another process finds it through the alias the record holds.
func TestLatencyByProcessPathAfterTheProcessExits(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	server := netip.AddrPortFrom(l.B4, port)
	before := natSnapshot(t, l.A)
	path, proc := startIn(t, l.A)
	f := latencyFault("by-pid", l.A, "egress", l.B4, port, 40*time.Millisecond, 0, "")
	f.Latency.Netns, f.Latency.NetnsPath = "", path
	env := injectors.Env{RunID: "by-pid"}
	inj := NewLatencyInjector()
	act := apply(t, inj, f, env)
	rec, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeLatencyRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if r.Target.Path != path || r.Target.ID == "" || !slices.Contains(r.Target.Aliases, l.A.Path) {
		t.Fatalf("record target %+v: want path %s, an identity, and alias %s", r.Target, path, l.A.Path)
	}
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists after the process exited: %v", path, err)
	}
	// The proxy dials upstream from inside the namespace: it must still get in, by the alias.
	ds := rtts(t, dialIn(t, l.A, server), 5, 10*time.Second)
	slices.Sort(ds)
	if m := percentile(ds, 0.5); m < 40*time.Millisecond {
		t.Fatalf("round trip %s after the process exited, want at least the 40ms delay", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := NewLatencyInjector().Revert(ctx, rec, env); err != nil {
		t.Fatalf("Revert from a fresh injector: %v", err)
	}
	if after := natSnapshot(t, l.A); after != before {
		t.Fatalf("nat tables after revert differ:\n--- before\n%s--- after\n%s", before, after)
	}
}

// When the recorded path names another namespace now (the PID was reused by a process elsewhere)
// and no alias names the original, revert touches nothing: not even a chain of the same name in
// the namespace the path leads to.
func TestLatencyRevertLeavesAReplacedNamespaceAlone(t *testing.T) {
	requireNet(t)
	l := netns.NewPair(t)
	port := echoIn(t, l.B, l.B4)
	env := injectors.Env{RunID: "replaced"}
	f := latencyFault("lat", l.A, "egress", l.B4, port, 10*time.Millisecond, 0, "")
	act := apply(t, NewLatencyInjector(), f, env)
	// The same run and fault in B owns a chain of the same name there.
	fb := latencyFault("lat", l.B, "egress", l.A4, port, 10*time.Millisecond, 0, "")
	apply(t, NewLatencyInjector(), fb, env)
	raw, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeLatencyRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.Target.ID == "" {
		t.Fatalf("record holds no namespace identity: %+v", r.Target)
	}
	r.Target.Path, r.Target.Aliases = l.B.Path, nil // A's identity, a path that leads to B
	doctored, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	duringB := natSnapshot(t, l.B)
	if err := NewLatencyInjector().Revert(ctx, doctored, env); err != nil {
		t.Fatalf("Revert of a record whose namespace was replaced: %v", err)
	}
	if now := natSnapshot(t, l.B); now != duringB {
		t.Fatalf("revert touched the namespace that replaced the recorded one:\n--- before\n%s--- after\n%s", duringB, now)
	}
	chain := chainName(env.RunID, "lat")
	for _, ns := range []*netns.NS{l.A, l.B} {
		if ok, err := hasChain(ctx, ns, chain); err != nil || !ok {
			t.Fatalf("chain %s in %s: present %v (%v), want still there", chain, ns.Name, ok, err)
		}
	}
}
