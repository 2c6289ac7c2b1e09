package main

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
)

// seedLineRE is the dry run's line under a randomly picked fault.
var seedLineRE = regexp.MustCompile(`(?m)^    (\w+) pick is random \(.*\); seed (\d+) — run with --seed (\d+) to touch these same targets$`)

// dryTargets runs a dry run with -o json and returns the first fault's planned targets and the
// seed the result records.
func dryTargets(t *testing.T, state string, args ...string) ([]string, uint64) {
	t.Helper()
	out := faultline(t, state, append([]string{"run", "--dry-run", "-o", "json"}, args...)...)
	if out.code != 0 {
		t.Fatalf("dry run %v: exit %d\n%s%s", args, out.code, out.stdout, out.stderr)
	}
	r := out.result(t)
	if r.Seed == nil || len(r.Plan) != 1 || len(r.Plan[0].Faults) != 1 {
		t.Fatalf("dry run result: seed %v, plan %+v", r.Seed, r.Plan)
	}
	if r.Plan[0].Faults[0].Random == "" {
		t.Fatalf("the plan does not say the pick is random: %+v", r.Plan[0].Faults[0])
	}
	return r.Plan[0].Faults[0].Targets, *r.Seed
}

// randomSeedShown runs a dry run in text without --seed and returns the seed it printed, after
// checking the line says the pick is random and how to repeat it.
func randomSeedShown(t *testing.T, state, what string, args ...string) uint64 {
	t.Helper()
	out := faultline(t, state, append([]string{"run", "--dry-run"}, args...)...)
	m := seedLineRE.FindStringSubmatch(out.stdout)
	if out.code != 0 || m == nil || m[1] != what || m[2] != m[3] {
		t.Fatalf("dry run without --seed: exit %d, want a line saying the %s pick is random with its seed:\n%s%s", out.code, what, out.stdout, out.stderr)
	}
	s, err := strconv.ParseUint(m[2], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A dry run and a run with the same --seed kill the same processes; the result records the seed;
// without --seed the dry run says the pick is random and prints a seed that repeats it.
func TestSeedProcessKillSameTargets(t *testing.T) {
	vs := startVictims(t, 6)
	state := t.TempDir()
	rb := runbook(t, `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: seeded}
environment: {name: test, type: local}
experiments:
  - name: monkey
    duration: 200ms
    faults:
      - name: kill
        processKill: {exe: "{{.Exe}}", count: 2}
`, map[string]string{"Exe": vs[0].Exe})

	shown := randomSeedShown(t, state, "process", rb)
	again, seed := dryTargets(t, state, "--seed", fmt.Sprint(shown), rb)
	if seed != shown {
		t.Fatalf("result seed %d, want %d", seed, shown)
	}
	if same, _ := dryTargets(t, state, "--seed", fmt.Sprint(shown), rb); !slices.Equal(same, again) {
		t.Fatalf("two dry runs with seed %d picked %v and %v", shown, again, same)
	}
	// The seed decides the pick: six seeds picking the same 2 of 6 processes would be a 1 in 15^5 chance.
	picks := map[string]bool{}
	for s := range 6 {
		p, _ := dryTargets(t, state, "--seed", fmt.Sprint(s+1), rb)
		picks[strings.Join(p, ",")] = true
	}
	if len(picks) < 2 {
		t.Fatalf("six seeds all picked %v", picks)
	}

	const runSeed = 77
	planned, _ := dryTargets(t, state, "--seed", fmt.Sprint(runSeed), rb)
	out := faultline(t, state, "run", "-o", "json", "--seed", fmt.Sprint(runSeed), rb)
	if out.code != 0 {
		t.Fatalf("run: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	res := out.result(t)
	if res.Seed == nil || *res.Seed != runSeed {
		t.Fatalf("result seed %v, want %d", res.Seed, runSeed)
	}
	f := res.Experiments[0].Faults[0]
	if !slices.Equal(f.Targets, planned) || f.Random == "" {
		t.Fatalf("the run killed %v (random %q), the dry run with the same seed planned %v", f.Targets, f.Random, planned)
	}
	for _, v := range vs {
		want := slices.Contains(planned, fmt.Sprintf("pid %d (%s)", v.PID(), v.Exe))
		waitFor(t, 10*time.Second, fmt.Sprintf("victim %d dead=%v", v.PID(), want), func() bool {
			st := v.State()
			return (st == "Z" || st == "gone") == want
		})
	}
}

// The same for pods: a dry run and a run with the same --seed kill the same pods of a Deployment.
func TestSeedPodKillSameTargets(t *testing.T) {
	c, f := kubeFixture(t, nil)
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 5, Labels: kubefix.OptIn()})
	f.Until(f.Ctx(time.Minute), "5 ready pods", func(ctx context.Context) (string, bool, error) {
		n, err := f.ReadyCount(ctx, "app=web")
		return fmt.Sprintf("%d ready", n), err == nil && n == 5, err
	})
	rb := kubeRunbook(t, kubeData{ClusterID: clusterUID(t, c), Server: c.Server,
		Faults: fmt.Sprintf(`[{podKill: {workload: {kind: Deployment, name: web, namespace: %s}, mode: fixed, value: 2, gracePeriod: 0s}}]`, f.NS)})
	state := t.TempDir()
	kc := []string{"--kubeconfig", c.Kubeconfig}

	shown := randomSeedShown(t, state, "pod", append(kc, rb)...)
	first, _ := dryTargets(t, state, append(kc, "--seed", fmt.Sprint(shown), rb)...)
	second, _ := dryTargets(t, state, append(kc, "--seed", fmt.Sprint(shown), rb)...)
	if !slices.Equal(first, second) || len(first) != 2 {
		t.Fatalf("two dry runs with seed %d picked %v and %v", shown, first, second)
	}

	const runSeed = 4242
	planned, _ := dryTargets(t, state, append(kc, "--seed", fmt.Sprint(runSeed), rb)...)
	before := podUIDs(t, f, "app=web")
	out := faultline(t, state, "run", "--kubeconfig", c.Kubeconfig, "-o", "json", "--seed", fmt.Sprint(runSeed), rb)
	if out.code != 0 {
		t.Fatalf("run: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	res := out.result(t)
	if res.Seed == nil || *res.Seed != runSeed {
		t.Fatalf("result seed %v, want %d", res.Seed, runSeed)
	}
	killed := res.Experiments[0].Faults[0].Targets
	if !slices.Equal(killed, planned) {
		t.Fatalf("the run killed %v, the dry run with the same seed planned %v", killed, planned)
	}
	gone := killedUIDs(t, killed, before)
	f.Until(f.Ctx(time.Minute), "the planned pods gone and replaced", func(ctx context.Context) (string, bool, error) {
		now := podUIDs(t, f, "app=web")
		for uid := range gone {
			if now[uid] {
				return "pod " + uid + " still there", false, nil
			}
		}
		survivors := 0
		for uid := range before {
			if now[uid] {
				survivors++
			}
		}
		return fmt.Sprintf("%d of the 3 unpicked pods left", survivors), survivors == 3, nil
	})
}

// killedUIDs reads the UIDs out of a fault's targets, each of which must be a pod of before.
func killedUIDs(t *testing.T, targets []string, before map[string]bool) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, tgt := range targets {
		m := podTargetRE.FindStringSubmatch(tgt)
		if m == nil || !before[m[3]] {
			t.Fatalf("target %q is not one of the Deployment's pods", tgt)
		}
		out[m[3]] = true
	}
	return out
}
