package network_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/internal/testenv/netns"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// A run killed without recovery leaves labelled chains; a new run with another ledger must refuse
// the namespace (exit 4, "run faultline recover") instead of applying on top of them.
func TestLeftoversOfADeadRunAreRefused(t *testing.T) {
	require(t)
	t.Parallel()
	ctx := ctxFor(t, 60*time.Second)
	ns := netns.New(t)
	baseline(t, ns)
	dir := t.TempDir()
	if err := os.Symlink(ns.Path, filepath.Join(dir, ns.Name)); err != nil {
		t.Fatal(err)
	}
	opts := []network.Option{network.NetnsDir(dir), network.SweepHostNamespace(false)}
	inj := injectorFor(t, network.KindPartition, opts...)
	fault := runbooks.Fault{Name: "cut", Partition: &runbooks.Partition{NetworkTarget: runbooks.NetworkTarget{Netns: ns.Name}}}

	// A live run's chain does not block another run.
	_, liveRec := applied(t, inj, runbooks.Fault{Name: "live", Partition: fault.Partition}, newEnv(t))
	if _, err := inj.Prepare(ctx, fault, newEnv(t)); err != nil {
		t.Fatalf("Prepare beside a live run's chain: %v", err)
	}

	orphan := newEnv(t)
	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperCrashedRun$", "-test.count=1")
	helper.Env = append(os.Environ(), "FAULTLINE_HELPER_NETNS="+ns.Name, "FAULTLINE_HELPER_NETNSDIR="+dir, "FAULTLINE_HELPER_RUNID="+orphan.RunID)
	if out, err := helper.CombinedOutput(); err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	_, err := inj.Prepare(ctx, fault, newEnv(t))
	var refused *policy.RefusedError
	if !errors.As(err, &refused) || refused.Rule != "leftovers" {
		t.Fatalf("Prepare over a dead run's chains: %v, want a refusal by leftovers", err)
	}
	for _, want := range []string{"run " + orphan.RunID, "faultline recover", network.ChainName(orphan.RunID, "left-behind"), "-t nat chain " + network.ChainName(orphan.RunID, "proxy")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}

	// After a sweep (what recover does) the fault is allowed again.
	if _, err := inj.(injectors.Sweeper).Sweep(ctx, func(string) bool { return false }, injectors.Env{}); err != nil {
		t.Fatal(err)
	}
	if _, err := inj.Prepare(ctx, fault, newEnv(t)); err != nil {
		t.Fatalf("Prepare after the sweep: %v", err)
	}
	if err := inj.Revert(ctx, liveRec, injectors.Env{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Exec(ctx, "sh", "-c", "iptables -F FAULTLINE-UNLABELED && iptables -X FAULTLINE-UNLABELED"); err != nil {
		t.Fatal(err)
	}
}
