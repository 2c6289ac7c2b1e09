package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/injectortest"
	kinj "github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

func podKill(k runbooks.PodKill) runbooks.Fault { return runbooks.Fault{Name: "pk", PodKill: &k} }

func grace0() *runbooks.Duration { d := runbooks.Duration(0); return &d }

// Killed pods of a 5-replica Deployment are replaced by the real ReplicaSet controller.
func TestPodKillReplicaSetReplacesPods(t *testing.T) {
	c, f := fixture(t, nil)
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 5, Labels: kubefix.OptIn()})
	ctx := f.Ctx(90 * time.Second)
	before, err := f.LivePods(ctx, "app=web")
	if err != nil {
		t.Fatal(err)
	}
	act, err := kinj.PodKill{}.Prepare(ctx, podKill(runbooks.PodKill{
		PodTarget: runbooks.PodTarget{Workload: &runbooks.WorkloadRef{Kind: "Deployment", Name: "web", Namespace: f.NS}},
		Mode:      runbooks.ModeFixed, Value: 2, GracePeriod: grace0(),
	}), env(t, c, runbooks.Policy{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(act.Targets()); n != 2 {
		t.Fatalf("targets = %v, want 2", act.Targets())
	}
	if err := act.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var killed []string
	for _, p := range before {
		for _, tgt := range act.Targets() {
			if strings.Contains(tgt, string(p.UID)) {
				killed = append(killed, string(p.UID))
			}
		}
	}
	if len(killed) != 2 {
		t.Fatalf("targets %v do not name 2 of the pods that existed", act.Targets())
	}
	f.Until(ctx, "the ReplicaSet to replace the 2 killed pods", func(ctx context.Context) (string, bool, error) {
		ps, err := f.LivePods(ctx, "app=web")
		if err != nil {
			return "", false, err
		}
		uids, ready := kubefix.UIDs(ps), 0
		for i := range ps {
			if kubefix.Ready(&ps[i]) {
				ready++
			}
		}
		gone := !uids[killed[0]] && !uids[killed[1]]
		return fmt.Sprintf("%d pods, %d ready, killed gone: %v", len(ps), ready, gone), gone && ready == 5 && len(ps) == 5, nil
	})
}

var targetRE = regexp.MustCompile(`^pod (\S+)/(\S+) \(uid [0-9a-f-]{36}\) on node (chaos-[01])$`)

// Each mode selects what it promises, among exactly the pods the selectors match.
func TestPodKillModesAndSelectors(t *testing.T) {
	c, f := fixture(t, kubefix.OptIn())
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 10, PodLabels: map[string]string{"tier": "web"}, Node: "chaos-0"})
	f.Deployment(kubefix.Spec{Name: "db", Replicas: 4, PodLabels: map[string]string{"tier": "db"}, Node: "chaos-1"})
	f.Pod("loner", map[string]string{"tier": "web", "app": "loner"}, "chaos-0") // a bare pod
	ctx := f.Ctx(2 * time.Minute)
	before, err := f.LivePods(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ns := []string{f.NS}
	e := env(t, c, runbooks.Policy{})
	prepare := func(k runbooks.PodKill) []string {
		t.Helper()
		act, err := kinj.PodKill{}.Prepare(ctx, podKill(k), e)
		if err != nil {
			t.Fatalf("Prepare %+v: %v", k, err)
		}
		for _, tgt := range act.Targets() {
			if m := targetRE.FindStringSubmatch(tgt); m == nil || m[1] != f.NS {
				t.Fatalf("target %q is not 'pod %s/NAME (uid UID) on node NODE'", tgt, f.NS)
			}
		}
		return act.Targets()
	}
	names := func(ts []string) string {
		var out []string
		for _, tgt := range ts {
			m := targetRE.FindStringSubmatch(tgt)
			out = append(out, m[2])
		}
		return strings.Join(out, " ")
	}
	web := runbooks.PodTarget{Namespaces: ns, LabelSelector: "tier=web"} // 10 + the bare pod = 11
	for _, tc := range []struct {
		name string
		k    runbooks.PodKill
		want int
		// each target's name must match
		only *regexp.Regexp
	}{
		{"one by default", runbooks.PodKill{PodTarget: web}, 1, nil},
		{"one", runbooks.PodKill{PodTarget: web, Mode: "one"}, 1, nil},
		{"fixed 3", runbooks.PodKill{PodTarget: web, Mode: "fixed", Value: 3}, 3, nil},
		{"fixed beyond the candidates", runbooks.PodKill{PodTarget: web, Mode: "fixed", Value: 50}, 11, nil},
		{"fixed-percent 25 of 11 rounds up to 3", runbooks.PodKill{PodTarget: web, Mode: "fixed-percent", Value: 25}, 3, nil},
		{"fixed-percent 1 is at least one", runbooks.PodKill{PodTarget: web, Mode: "fixed-percent", Value: 1}, 1, nil},
		{"all", runbooks.PodKill{PodTarget: web, Mode: "all"}, 11, regexp.MustCompile(`^(web-|loner$)`)},
		{"set-based selector", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "tier in (db)"}, Mode: "all"}, 4, regexp.MustCompile(`^db-`)},
		{"field selector: the pods on one node", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, FieldSelector: "spec.nodeName=chaos-1"}, Mode: "all"}, 4, regexp.MustCompile(`^db-`)},
		{"label and field selector", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "tier=web", FieldSelector: "metadata.name=loner"}, Mode: "all"}, 1, regexp.MustCompile(`^loner$`)},
		{"workload: only the Deployment's pods, not the bare pod with its labels", runbooks.PodKill{PodTarget: runbooks.PodTarget{
			Workload: &runbooks.WorkloadRef{Kind: "Deployment", Name: "web", Namespace: f.NS}}, Mode: "all"}, 10, regexp.MustCompile(`^web-`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := prepare(tc.k)
			if len(got) != tc.want {
				t.Fatalf("%d targets, want %d: %s", len(got), tc.want, names(got))
			}
			seen := map[string]bool{}
			for _, n := range strings.Fields(names(got)) {
				if seen[n] {
					t.Fatalf("pod %s chosen twice", n)
				}
				seen[n] = true
				if tc.only != nil && !tc.only.MatchString(n) {
					t.Fatalf("pod %s is outside the selection: %s", n, names(got))
				}
			}
		})
	}
	t.Run("random-max-percent 30 of 11 is 1 to 3, at random", func(t *testing.T) {
		counts := map[int]int{}
		for range 40 {
			n := len(prepare(runbooks.PodKill{PodTarget: web, Mode: "random-max-percent", Value: 30}))
			if n < 1 || n > 3 {
				t.Fatalf("chose %d pods, want 1..3", n)
			}
			counts[n]++
		}
		if len(counts) < 2 {
			t.Fatalf("40 draws all chose the same count: %v", counts)
		}
	})
	t.Run("random choice varies", func(t *testing.T) {
		seen := map[string]bool{}
		for range 20 {
			seen[names(prepare(runbooks.PodKill{PodTarget: web}))] = true
		}
		if len(seen) < 3 {
			t.Fatalf("20 draws of one pod out of 11 hit only %v", seen)
		}
	})
	// Prepare touched nothing.
	after, err := f.LivePods(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(kubefix.UIDs(after)) != fmt.Sprint(kubefix.UIDs(before)) {
		t.Fatalf("Prepare changed the pods: %d before, %d after", len(before), len(after))
	}
}

func refusedRule(t *testing.T, err error) string {
	t.Helper()
	var r *policy.RefusedError
	if !errors.As(err, &r) {
		t.Fatalf("want a refusal, got %v", err)
	}
	return r.Rule
}

// The policy refuses, naming its rule, before anything is touched.
func TestPodKillPolicy(t *testing.T) {
	c, f := fixture(t, nil)                                                          // namespace not opted in
	f.Deployment(kubefix.Spec{Name: "in", Replicas: 4, Labels: kubefix.OptIn()})     // opted in on the workload
	f.Deployment(kubefix.Spec{Name: "out", Replicas: 2})                             // not opted in
	f.Deployment(kubefix.Spec{Name: "tpl", Replicas: 2, PodLabels: kubefix.OptIn()}) // opted in through its pods' labels
	ctx := f.Ctx(time.Minute)
	ns := []string{f.NS}
	no := false
	for _, tc := range []struct {
		name string
		k    runbooks.PodKill
		p    runbooks.Policy
		rule string // "" = allowed
	}{
		{"opted-in workload", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=in"}}, runbooks.Policy{}, ""},
		{"opted in by pod template", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=tpl"}}, runbooks.Policy{}, ""},
		{"workload without opt-in", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=out"}}, runbooks.Policy{}, "policy.requireOptIn"},
		{"one bad workload in the selection refuses it all", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns}}, runbooks.Policy{}, "policy.requireOptIn"},
		{"requireOptIn: false", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=out"}}, runbooks.Policy{RequireOptIn: &no}, ""},
		{"kube-system", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: []string{"kube-system"}}}, runbooks.Policy{RequireOptIn: &no}, "namespace deny-list"},
		{"kube-node-lease", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: []string{f.NS, "kube-node-lease"}}}, runbooks.Policy{RequireOptIn: &no}, "namespace deny-list"},
		{"faultline's own namespace", runbooks.PodKill{PodTarget: runbooks.PodTarget{Workload: &runbooks.WorkloadRef{Kind: "Deployment", Name: "x", Namespace: "faultline"}}}, runbooks.Policy{RequireOptIn: &no}, "namespace deny-list"},
		{"missing namespace", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: []string{"no-such-ns"}}}, runbooks.Policy{}, "target"},
		{"missing workload", runbooks.PodKill{PodTarget: runbooks.PodTarget{Workload: &runbooks.WorkloadRef{Kind: "StatefulSet", Name: "nope", Namespace: f.NS}}}, runbooks.Policy{}, "target"},
		{"nothing matches", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=nope"}}, runbooks.Policy{}, "target"},
		{"maxPods", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=in"}, Mode: "fixed", Value: 3}, runbooks.Policy{MaxPods: 2}, "policy.maxPods"},
		{"maxPods at the limit", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=in"}, Mode: "fixed", Value: 2}, runbooks.Policy{MaxPods: 2}, ""},
		{"maxTargets", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=in"}, Mode: "all"}, runbooks.Policy{MaxTargets: 3}, "policy.maxTargets"},
		{"maxPercent", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=in"}, Mode: "fixed", Value: 2}, runbooks.Policy{MaxPercent: 25}, "policy.maxPercent"},
		{"maxPercent at the limit", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app=in"}, Mode: "fixed", Value: 1}, runbooks.Policy{MaxPercent: 25}, ""},
		{"maxWorkloads", runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: ns, LabelSelector: "app in (in,tpl)"}, Mode: "all"}, runbooks.Policy{MaxWorkloads: 1}, "policy.maxWorkloads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			act, err := kinj.PodKill{}.Prepare(ctx, podKill(tc.k), env(t, c, tc.p))
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if len(act.Targets()) == 0 {
					t.Fatal("no targets")
				}
				return
			}
			if got := refusedRule(t, err); got != tc.rule {
				t.Fatalf("refused by %q, want %q: %v", got, tc.rule, err)
			}
			if !strings.Contains(err.Error(), "refused by "+tc.rule+":") {
				t.Fatalf("message does not name the rule: %v", err)
			}
		})
	}
}

// Conformance: Prepare has no side effects and Revert is an idempotent no-op. The fault counts as
// active while the Deployment is short of its replicas after the ReplicaSet had time to replace
// the killed pods: a kill leaves nothing behind that needs undoing.
func TestPodKillConformance(t *testing.T) {
	c, f := fixture(t, kubefix.OptIn())
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 3})
	injectortest.Run(t, kinj.PodKill{}, injectortest.Case{
		Fault: podKill(runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: []string{f.NS}, LabelSelector: "app=web"},
			Mode: "fixed", Value: 2, GracePeriod: grace0()}),
		Env: env(t, c, runbooks.Policy{}),
		Active: func(ctx context.Context) (bool, error) {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				n, err := f.ReadyCount(wctx, "app=web")
				if err == nil && n == 3 {
					return false, nil
				}
				select {
				case <-wctx.Done():
					return true, nil
				case <-tick.C:
				}
			}
		},
		Revertible: false,
	})
}

// With an interval the kill repeats, choosing afresh, and the ledger record grows with every pod hit
// before it is hit.
func TestPodKillIntervalKeepsKilling(t *testing.T) {
	c, f := fixture(t, kubefix.OptIn())
	f.Deployment(kubefix.Spec{Name: "web", Replicas: 3})
	ctx := f.Ctx(time.Minute)
	act, err := kinj.PodKill{}.Prepare(ctx, podKill(runbooks.PodKill{
		PodTarget:   runbooks.PodTarget{Namespaces: []string{f.NS}, LabelSelector: "app=web"},
		GracePeriod: grace0(), Interval: runbooks.Duration(400 * time.Millisecond),
	}), env(t, c, runbooks.Policy{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := act.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	var records []json.RawMessage
	var events []injectors.Event
	window, cancel := context.WithTimeout(ctx, 2300*time.Millisecond)
	defer cancel()
	err = act.(injectors.Sustainer).Sustain(window, func(_ context.Context, r json.RawMessage) error {
		records = append(records, r)
		return nil
	}, func(e injectors.Event) { events = append(events, e) })
	if err != nil {
		t.Fatal(err)
	}
	kills := 0
	for _, e := range events {
		if strings.HasPrefix(e.Message, "killed ") {
			kills += len(e.Targets)
		}
	}
	if kills < 3 {
		t.Fatalf("%d pods killed in 2.3s at a 400ms interval; events: %+v", kills, events)
	}
	var last struct {
		Killed int `json:"killed"`
		Pods   []struct {
			UID string `json:"uid"`
		} `json:"pods"`
	}
	if len(records) == 0 {
		t.Fatal("no ledger record during the window")
	}
	if err := json.Unmarshal(records[len(records)-1], &last); err != nil {
		t.Fatal(err)
	}
	if last.Killed < kills || len(last.Pods) < kills {
		t.Fatalf("last record says %d killed (%d pods), events say %d (+1 at apply)", last.Killed, len(last.Pods), kills)
	}
	seen := map[string]bool{}
	for _, p := range last.Pods {
		if seen[p.UID] {
			t.Fatalf("pod %s killed twice: each round must choose among live pods", p.UID)
		}
		seen[p.UID] = true
	}
	f.WaitReadyPods(ctx, "app=web", 3)

}
