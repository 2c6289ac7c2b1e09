//go:build linux

package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/injectortest"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// freeAddr returns a loopback address nothing listens on (the port was free a moment ago).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func listening(ctx context.Context, addr string) (bool, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return false, nil
	}
	_ = c.Close()
	return true, nil
}

func TestProxyConformance(t *testing.T) {
	up := serve(t, echo)
	listen := freeAddr(t)
	injectortest.Run(t, NewProxyInjector(), injectortest.Case{
		Fault: runbooks.Fault{Name: "pg", Proxy: &runbooks.Proxy{
			Listen: listen, Upstream: up.Addr().String(),
			Toxics: []runbooks.ProxyToxic{{Latency: &runbooks.ToxicLatency{Delay: runbooks.Duration(5 * time.Millisecond)}}},
		}},
		Revertible: true,
		Active:     func(ctx context.Context) (bool, error) { return listening(ctx, listen) },
	})
}

// TestProxyFromRunbook loads a runbook with a proxy fault the way a docker-compose golden copy
// uses Toxiproxy, applies it and checks the toxics on the wire.
func TestProxyFromRunbook(t *testing.T) {
	up := serve(t, echo)
	listen := freeAddr(t)
	doc := fmt.Sprintf(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: pg-latency}
environment: {name: compose, type: golden-copy}
experiments:
  - name: slow-db
    duration: 30s
    faults:
      - proxy:
          listen: %s
          upstream: %s
          toxics:
            - latency: {delay: 30ms}
              stream: downstream
            - name: trickle
              bandwidth: {rate: 100Mbit}
              stream: upstream
`, listen, up.Addr())
	rb, err := runbooks.Parse("golden.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	f := rb.Experiments[0].Faults[0]
	inj := NewProxyInjector()
	act := apply(t, inj, f, injectors.Env{RunID: "compose"})
	desc := act.(injectors.Describer).Describe()
	t.Logf("Describe:\n%s", strings.Join(desc, "\n"))
	if len(desc) != 3 || !strings.Contains(desc[1], "latency 30ms±0 downstream") || !strings.Contains(desc[2], "toxic trickle: bandwidth 12.5MB/s upstream") {
		t.Fatalf("Describe: %q", desc)
	}
	c := dial(t, listen)
	c.SetNoDelay(true)
	buf := make([]byte, 8)
	var ds []time.Duration
	for range 10 {
		d, err := roundTrip(c, []byte("SELECT 1"), buf)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	if m := ds[len(ds)/2]; m < 30*time.Millisecond || m > 35*time.Millisecond {
		t.Fatalf("round trip %s through a 30ms downstream latency", m)
	}
	_ = c.Close()
	rec, err := act.Record()
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Revert(context.Background(), rec, injectors.Env{}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := listening(context.Background(), listen); ok {
		t.Fatal("listener still open after Revert")
	}
}

// TestProxyRevertFromAnotherProcess: a record of a proxy whose process is gone reverts to nothing;
// one whose process still runs is reported, not silently "reverted".
func TestProxyRevertFromAnotherProcess(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	gone := proxyRecord{ID: "x", Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2", PID: 1 << 22, Exe: exe}
	b, _ := json.Marshal(gone)
	if err := NewProxyInjector().Revert(context.Background(), b, injectors.Env{}); err != nil {
		t.Fatalf("record of a dead process: %v", err)
	}
	// A live faultline process (this test binary's parent cannot be used: pretend with our own
	// executable and a pid that runs it — our own pid is handled as "this process").
	live := proxyRecord{ID: "y", Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2", PID: os.Getppid(), Exe: mustExe(t, os.Getppid())}
	b, _ = json.Marshal(live)
	if err := NewProxyInjector().Revert(context.Background(), b, injectors.Env{}); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("record of a live process: %v, want an error saying it still runs", err)
	}
}

func mustExe(t *testing.T, pid int) string {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Skipf("cannot read the parent's executable: %v", err)
	}
	return exe
}

func TestProxyListenInUseIsRefused(t *testing.T) {
	up := serve(t, echo)
	busy := serve(t, echo)
	act, err := NewProxyInjector().Prepare(context.Background(), runbooks.Fault{Name: "p", Proxy: &runbooks.Proxy{Listen: busy.Addr().String(), Upstream: up.Addr().String()}}, injectors.Env{})
	if err != nil {
		t.Fatal(err)
	}
	err = act.Apply(context.Background(), noRecord)
	var refused *policy.RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("Apply on a busy address: %v, want a RefusedError", err)
	}
}
