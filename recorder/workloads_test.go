package recorder_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
)

func podKill(ns, selector string) runbooks.Fault {
	return runbooks.Fault{Name: "kill", PodKill: &runbooks.PodKill{
		PodTarget: runbooks.PodTarget{Namespaces: []string{ns}, LabelSelector: selector}, Mode: runbooks.ModeFixed, Value: 2,
	}}
}

func workloadFault(kind, ns, name string) runbooks.Fault {
	return runbooks.Fault{Name: "outage", ShardOutage: &runbooks.ShardOutage{
		PodTarget: runbooks.PodTarget{Workload: &runbooks.WorkloadRef{Kind: kind, Namespace: ns, Name: name}}, Mode: runbooks.ModeScaleToZero,
	}}
}

func finish(t *testing.T, s experiments.RecorderSession, within time.Duration, revertedAt time.Time) (experiments.Recording, *recorder.Document) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	res := s.Finish(ctx, experiments.RecordingEnd{RevertedAt: revertedAt})
	doc, ok := res.Data.(*recorder.Document)
	if !ok {
		t.Fatalf("Data is %T, want *recorder.Document", res.Data)
	}
	js, _ := json.MarshalIndent(doc, "", "  ")
	t.Logf("recovered=%v reason=%q\n%s", res.Recovered, res.Reason, js)
	return res, doc
}

// inOrder checks a < b on the watch clock, and that the API server's own second-precision stamps
// agree within their truncation: the server stamp is at most the arrival time (plus a little
// slack for clock reads on the same host), and not more than 2s older.
func inOrder(t *testing.T, what string, a, b *recorder.Moment) {
	t.Helper()
	if a == nil || b == nil {
		t.Fatalf("%s: missing moment (%v, %v)", what, a, b)
	}
	if b.At.Before(a.At) {
		t.Errorf("%s: out of order: %s then %s", what, a.At.Format(time.RFC3339Nano), b.At.Format(time.RFC3339Nano))
	}
	for _, m := range []*recorder.Moment{a, b} {
		if m.APIServer == nil {
			continue
		}
		if d := m.At.Sub(*m.APIServer); d < -50*time.Millisecond || d > 2*time.Second {
			t.Errorf("%s: arrival %s is %s after the API server's stamp %s", what, m.At.Format(time.RFC3339Nano), d, m.APIServer.Format(time.RFC3339))
		}
		if m.Late {
			t.Errorf("%s: marked late in a healthy cluster", what)
		}
	}
}

func TestWorkloads(t *testing.T) {
	c := cluster.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	env := envFor(t, c)
	cs := c.Client
	rec := &recorder.Workloads{}

	t.Run("no kubernetes faults, nothing to watch", func(t *testing.T) {
		x := &runbooks.Experiment{Name: "x", Faults: []runbooks.Fault{{ProcessPause: &runbooks.ProcessPause{}}}}
		s, err := rec.Start(ctx, x, env)
		if s != nil || err != nil {
			t.Fatalf("Start = %v, %v; want nil, nil", s, err)
		}
	})

	t.Run("kill 2 of 5: replacements created, scheduled, Ready, in order", func(t *testing.T) {
		createNamespace(ctx, t, cs, "shop")
		createDeployment(ctx, t, cs, "shop", "checkout", 5, "")
		// A bystander in the same namespace: not selected, not recorded.
		createDeployment(ctx, t, cs, "shop", "cart", 2, "")

		x := &runbooks.Experiment{Name: "kill-two", Faults: []runbooks.Fault{podKill("shop", "app=checkout")}}
		s, err := rec.Start(ctx, x, env)
		if err != nil || s == nil {
			t.Fatalf("Start: %v, %v", s, err)
		}
		faultAt := time.Now()
		killed := killPods(ctx, t, cs, "shop", "app=checkout", 2)
		s.FaultApplied(experiments.AppliedFault{Name: "kill", Kind: "pod-kill", Targets: killed, At: time.Now()})
		// The injector has nothing to revert for a pod kill; the engine calls Finish right away.
		revertedAt := time.Now()
		res, doc := finish(t, s, 30*time.Second, revertedAt)

		if !res.Recovered || res.Reason != "" {
			t.Fatalf("recovered=%v reason=%q", res.Recovered, res.Reason)
		}
		if len(doc.Pods) != 2 {
			t.Fatalf("%d pod timelines, want 2", len(doc.Pods))
		}
		replacements := map[string]bool{}
		for _, p := range doc.Pods {
			if !p.Targeted || !slices.ContainsFunc(killed, func(k injectors.Target) bool { return k.UID == p.UID }) {
				t.Errorf("pod %s: targeted=%v, not one of the killed %v", p.Pod, p.Targeted, killed)
			}
			if p.Workload != "deployment shop/checkout" {
				t.Errorf("pod %s: workload %q", p.Pod, p.Workload)
			}
			if p.KilledAt.At.Before(faultAt) {
				t.Errorf("pod %s killed at %s, before the fault at %s", p.Pod, p.KilledAt.At, faultAt)
			}
			r := p.Replacement
			if r == nil {
				t.Fatalf("pod %s: no replacement", p.Pod)
			}
			if replacements[r.Pod] || r.Pod == p.Pod {
				t.Errorf("replacement %s used twice or replaces itself", r.Pod)
			}
			replacements[r.Pod] = true
			inOrder(t, p.Pod+" killed → replacement created", p.KilledAt, r.CreatedAt)
			inOrder(t, p.Pod+" replacement created → scheduled", r.CreatedAt, r.ScheduledAt)
			inOrder(t, p.Pod+" replacement scheduled → Ready", r.ScheduledAt, r.ReadyAt)
			if r.Node == "" || r.Pending != "" {
				t.Errorf("replacement %s: node %q pending %q", r.Pod, r.Node, r.Pending)
			}
			for _, m := range []*recorder.Moment{p.KilledAt, r.CreatedAt, r.ReadyAt} {
				if m.APIServer == nil {
					t.Errorf("pod %s: a moment without the API server's stamp: %+v", p.Pod, m)
				}
			}
			ttr, err := time.ParseDuration(p.TimeToReady)
			if err != nil || ttr != r.ReadyAt.At.Sub(p.KilledAt.At).Round(time.Millisecond) || ttr <= 0 || ttr > 10*time.Second {
				t.Errorf("pod %s: timeToReady %q (%v)", p.Pod, p.TimeToReady, err)
			}
		}
		if len(doc.Workloads) != 1 {
			t.Fatalf("%d workloads recorded, want 1 (the bystander is not selected)", len(doc.Workloads))
		}
		w := doc.Workloads[0]
		if w.Workload != "deployment shop/checkout" || !w.Recovered || w.PodsKilled != 2 || w.Desired != 5 || w.Ready != 5 || w.Available != 5 {
			t.Errorf("workload record %+v", w)
		}
		if w.MinReady > 3 {
			t.Errorf("minReady %d: two of five pods were killed", w.MinReady)
		}
		last := doc.Pods[0].Replacement.ReadyAt.At
		if r := doc.Pods[1].Replacement.ReadyAt.At; r.After(last) {
			last = r
		}
		if w.RecoveredAt == nil || w.RecoveredAt.At.Before(last) {
			t.Errorf("recoveredAt %v before the last replacement was Ready (%s)", w.RecoveredAt, last)
		}
		// The figures the objectives read: ready again from the last deletion, the two kills.
		figs := figuresOf(res)
		lastKill := doc.Pods[0].KilledAt.Best()
		if k := doc.Pods[1].KilledAt.Best(); k.After(lastKill) {
			lastKill = k
		}
		if f := figs["workloads/deployment shop/checkout/timeToReady"]; f.Value == nil ||
			!approx(*f.Value, w.RecoveredAt.Best().Sub(lastKill).Seconds()) {
			t.Errorf("timeToReady figure %+v, want recoveredAt − last kill = %s", f, w.RecoveredAt.Best().Sub(lastKill))
		}
		if f := figs["workloads/deployment shop/checkout/podsKilled"]; f.Value == nil || *f.Value != 2 {
			t.Errorf("podsKilled figure %+v", f)
		}
		if len(res.Timelines) != 1 || len(res.Timelines[0].Series) != 2 || len(res.Timelines[0].Series[0].Points) < 2 {
			t.Errorf("timeline %+v: want ready and available series that moved", res.Timelines)
		}
		ttr, err := time.ParseDuration(w.TimeToRecover)
		if err != nil || ttr != w.RecoveredAt.At.Sub(w.DisruptedAt.At).Round(time.Millisecond) || ttr <= 0 {
			t.Errorf("timeToRecover %q (%v)", w.TimeToRecover, err)
		}
		if w.DisruptedAt.At != doc.Pods[0].KilledAt.At || w.LastKillAt.At != doc.Pods[1].KilledAt.At {
			t.Errorf("disruptedAt/lastKillAt are not the first and last deletion")
		}
		if !w.RecoveredBeforeRevert && w.AfterRevert == "" {
			t.Errorf("neither afterRevert nor recoveredBeforeRevert")
		}
		if len(doc.Faults) != 1 || doc.Faults[0].Kind != "pod-kill" {
			t.Errorf("faults %+v", doc.Faults)
		}
	})

	t.Run("replacements stay Pending: not recovered, with counts and the scheduler's reason", func(t *testing.T) {
		createNamespace(ctx, t, cs, "stuck")
		createDeployment(ctx, t, cs, "stuck", "ledger", 3, "rec-1")
		x := &runbooks.Experiment{Name: "stuck", Faults: []runbooks.Fault{podKill("stuck", "app=ledger")}}
		s, err := rec.Start(ctx, x, env)
		if err != nil {
			t.Fatal(err)
		}
		// The node the Deployment is pinned to takes no new pods: replacements cannot be scheduled.
		taintNode(ctx, t, cs, "rec-1", true)
		defer taintNode(context.WithoutCancel(ctx), t, cs, "rec-1", false)
		killPods(ctx, t, cs, "stuck", "app=ledger", 1)
		res, doc := finish(t, s, 4*time.Second, time.Now())
		if res.Recovered {
			t.Fatal("recovered with a replacement that cannot be scheduled")
		}
		for _, want := range []string{"deployment stuck/ledger: 2/3 ready", "/3 available", "1 new pod(s) not scheduled: 0/2 nodes are available", "untolerated taint"} {
			if !strings.Contains(res.Reason, want) {
				t.Errorf("reason %q does not say %q", res.Reason, want)
			}
		}
		w := doc.Workloads[0]
		if w.Recovered || w.RecoveredAt != nil || w.Ready != 2 || w.Desired != 3 || w.Reason == "" {
			t.Errorf("workload record %+v", w)
		}
		if len(doc.Pods) != 1 || doc.Pods[0].Replacement == nil || doc.Pods[0].Replacement.ScheduledAt != nil || doc.Pods[0].Replacement.Pending == "" {
			t.Errorf("pod timeline: want a replacement created but Pending, got %+v", doc.Pods)
		}
	})

	t.Run("scale to zero until revert: time to recover from the revert", func(t *testing.T) {
		createNamespace(ctx, t, cs, "shard")
		createDeployment(ctx, t, cs, "shard", "shard-2", 3, "")
		x := &runbooks.Experiment{Name: "outage", Faults: []runbooks.Fault{workloadFault("Deployment", "shard", "shard-2")}}
		s, err := rec.Start(ctx, x, env)
		if err != nil {
			t.Fatal(err)
		}
		setReplicas(ctx, t, cs, "shard", "shard-2", 0) // the fault, as shard-outage scale-to-zero does it
		s.FaultApplied(experiments.AppliedFault{Name: "outage", Kind: "shard-outage", At: time.Now(), Targets: []injectors.Target{
			{Kind: "deployment", Namespace: "shard", Name: "shard-2", Workload: &injectors.WorkloadRef{Kind: "deployment", Namespace: "shard", Name: "shard-2"}}}})
		pollUntil(ctx, t, "shard-2 scaled to zero", func(ctx context.Context) (string, bool, error) {
			l, err := cs.CoreV1().Pods("shard").List(ctx, metav1ListApp("shard-2"))
			if err != nil {
				return "", false, err
			}
			return "", len(l.Items) == 0, nil
		})
		setReplicas(ctx, t, cs, "shard", "shard-2", 3) // the revert
		revertedAt := time.Now()
		res, doc := finish(t, s, 30*time.Second, revertedAt)
		if !res.Recovered {
			t.Fatalf("not recovered: %s", res.Reason)
		}
		w := doc.Workloads[0]
		if w.PodsKilled != 3 || w.MinReady != 0 || w.Desired != 3 || w.RecoveredBeforeRevert || w.AfterRevert == "" {
			t.Errorf("workload record %+v", w)
		}
		// A shard held down until the revert is ready again from the revert, not from its kills.
		if f := figuresOf(res)["workloads/deployment shard/shard-2/timeToReady"]; f.Value == nil ||
			!approx(*f.Value, w.RecoveredAt.Best().Sub(revertedAt).Seconds()) || !strings.Contains(f.Note, "the revert") {
			t.Errorf("timeToReady figure %+v, want recoveredAt − revert = %s", f, w.RecoveredAt.Best().Sub(revertedAt))
		}
		if len(doc.Pods) != 3 {
			t.Fatalf("%d pod timelines, want 3", len(doc.Pods))
		}
		for _, p := range doc.Pods {
			if p.Targeted {
				t.Errorf("pod %s deleted by the controller marked targeted", p.Pod)
			}
			if p.Replacement == nil || p.Replacement.CreatedAt.At.Before(revertedAt.Add(-time.Second)) || p.Replacement.ReadyAt == nil {
				t.Errorf("pod %s: replacement %+v: want one created after the revert, Ready", p.Pod, p.Replacement)
			}
		}
	})

	t.Run("a workload that does not exist fails Start", func(t *testing.T) {
		x := &runbooks.Experiment{Name: "missing", Faults: []runbooks.Fault{workloadFault("StatefulSet", "shop", "nope")}}
		if _, err := rec.Start(ctx, x, env); err == nil || !strings.Contains(err.Error(), "statefulset shop/nope does not exist") {
			t.Fatalf("Start: %v", err)
		}
	})
}

func figuresOf(r experiments.Recording) map[string]experiments.Figure {
	out := map[string]experiments.Figure{}
	for _, f := range r.Figures {
		out[f.Key] = f
	}
	return out
}

func approx(a, b float64) bool { return a-b < 0.001 && b-a < 0.001 }
