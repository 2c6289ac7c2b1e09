//go:build linux

package experiments

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/network"
	"github.com/faultline-dev/faultline/safety/ledger"
)

// countingSweeper forwards to a real injector and counts its sweeps.
type countingSweeper struct {
	injectors.Injector
	sweeps *int
}

func (c countingSweeper) Sweep(ctx context.Context, owned func(string) bool, env injectors.Env) ([]string, error) {
	*c.sweeps++
	return c.Injector.(injectors.Sweeper).Sweep(ctx, owned, env)
}

func (c countingSweeper) SweepScope() string {
	return c.Injector.(injectors.SweepScoper).SweepScope()
}

// TestRecoverSweepsEachScopeOnce: the four iptables kinds sweep the same chains, so Recover
// sweeps them once; a second set of network injectors (another netns directory) is its own scope.
func TestRecoverSweepsEachScopeOnce(t *testing.T) {
	led, err := ledger.OpenFile(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	// No host namespace and an empty netns directory: the sweeps are real but touch nothing.
	opts := []network.Option{network.SweepHostNamespace(false), network.NetnsDir(t.TempDir())}
	var sweeps int
	var injs []injectors.Injector
	for _, inj := range network.Injectors(opts...) {
		if _, ok := inj.(injectors.Sweeper); ok {
			inj = countingSweeper{Injector: inj, sweeps: &sweeps}
		}
		injs = append(injs, inj)
	}
	if len(injs) < 4 {
		t.Fatalf("network.Injectors returned %d injectors", len(injs))
	}
	reg, err := injectors.NewRegistry(injs...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Recover(context.Background(), led, reg, injectors.Env{}, RecoverOptions{}); err != nil {
		t.Fatal(err)
	}
	if sweeps != 1 {
		t.Fatalf("Recover swept the iptables scope %d times, want 1", sweeps)
	}

	other := network.Injectors(network.SweepHostNamespace(false), network.NetnsDir(t.TempDir()))
	a, b := injs[0].(injectors.SweepScoper), other[0].(injectors.SweepScoper)
	if a.SweepScope() == b.SweepScope() {
		t.Fatalf("injectors of two configurations share the scope %q", a.SweepScope())
	}
}
