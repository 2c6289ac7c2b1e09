package kubernetes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/injectortest"
	kinj "github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/runbooks"
)

func shardOutage(s runbooks.ShardOutage) runbooks.Fault {
	return runbooks.Fault{Name: "shard", ShardOutage: &s}
}

func workloadTarget(kind, name, ns string) runbooks.PodTarget {
	return runbooks.PodTarget{Workload: &runbooks.WorkloadRef{Kind: kind, Name: name, Namespace: ns}}
}

func mustReplicas(t *testing.T, f *kubefix.Fixture, kind, name string) int32 {
	t.Helper()
	n, err := f.Replicas(f.Ctx(10*time.Second), kind, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustHPAMin(t *testing.T, f *kubefix.Fixture, name string) string {
	t.Helper()
	m, err := f.HPAMin(f.Ctx(10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	if m == nil {
		return "unset"
	}
	return fmt.Sprint(*m)
}

// Conformance for scale-to-zero of a StatefulSet shard that an HPA targets: the record restores the
// replicas exactly, from the JSON alone, idempotently; the HPA's minReplicas is what it was.
func TestScaleToZeroConformance(t *testing.T) {
	c, f := fixture(t, kubefix.OptIn())
	f.StatefulSet(kubefix.Spec{Name: "db-2", Replicas: 3, PodLabels: map[string]string{"shard": "2"}})
	f.HPA("StatefulSet", "db-2", kubefix.Ptr(int32(2)), 6)
	injectortest.Run(t, kinj.ShardOutage{}, injectortest.Case{
		Fault: shardOutage(runbooks.ShardOutage{PodTarget: workloadTarget("StatefulSet", "db-2", f.NS), Mode: "scale-to-zero"}),
		Env:   env(t, c, runbooks.Policy{}),
		Active: func(ctx context.Context) (bool, error) {
			n, err := f.Replicas(ctx, "StatefulSet", "db-2")
			return n == 0, err
		},
		Revertible: true,
	})
	if n := mustReplicas(t, f, "StatefulSet", "db-2"); n != 3 {
		t.Fatalf("replicas after revert = %d, want 3", n)
	}
	if m := mustHPAMin(t, f, "db-2"); m != "2" {
		t.Fatalf("hpa minReplicas after revert = %s, want 2", m)
	}
	f.WaitReadyPods(f.Ctx(time.Minute), "app=db-2", 3)
}

func hpaCondition(ctx context.Context, f *kubefix.Fixture, name string, typ autoscalingv2.HorizontalPodAutoscalerConditionType) (string, error) {
	h, err := f.CS.AutoscalingV2().HorizontalPodAutoscalers(f.NS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	for _, c := range h.Status.Conditions {
		if c.Type == typ {
			return fmt.Sprintf("%s/%s", c.Status, c.Reason), nil
		}
	}
	return "", nil
}

// The real HPA controller does not scale a StatefulSet at 0 back to its minReplicas: it reports
// ScalingDisabled and leaves it. Revert restores replicas and the HPA exactly.
func TestScaleToZeroHPAStaysOut(t *testing.T) {
	c, f := fixture(t, kubefix.OptIn())
	f.StatefulSet(kubefix.Spec{Name: "db-1", Replicas: 3})
	f.HPA("StatefulSet", "db-1", kubefix.Ptr(int32(2)), 6)
	ctx := f.Ctx(2 * time.Minute)
	act, err := kinj.ShardOutage{}.Prepare(ctx, shardOutage(runbooks.ShardOutage{PodTarget: workloadTarget("StatefulSet", "db-1", f.NS), Mode: "scale-to-zero"}), env(t, c, runbooks.Policy{}))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("statefulset %s/db-1 (uid ", f.NS)
	if tg := act.Targets(); len(tg) != 1 || !strings.HasPrefix(tg[0], want) || !strings.Contains(tg[0], "3 → 0 replicas") || !strings.Contains(tg[0], "hpa "+f.NS+"/db-1 (minReplicas 2) left as is") {
		t.Fatalf("targets = %q", tg)
	}
	var rec json.RawMessage
	if err := act.Apply(ctx, func(_ context.Context, r json.RawMessage) error { rec = r; return nil }); err != nil {
		t.Fatal(err)
	}
	f.Until(ctx, "the HPA controller to see the target at 0", func(ctx context.Context) (string, bool, error) {
		s, err := hpaCondition(ctx, f, "db-1", autoscalingv2.ScalingActive)
		return s, s == "False/ScalingDisabled", err
	})
	// Two more HPA sync periods (5s in the test cluster): the shard stays at 0, with no pod.
	hold, cancel := context.WithTimeout(ctx, 11*time.Second)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for hold.Err() == nil {
		n, err := f.Replicas(ctx, "StatefulSet", "db-1")
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("the shard came back to %d replicas during the outage", n)
		}
		select {
		case <-hold.Done():
		case <-tick.C:
		}
	}
	f.WaitReadyPods(ctx, "app=db-1", 0)
	if err := (kinj.ShardOutage{}).Revert(ctx, rec, env(t, c, runbooks.Policy{})); err != nil {
		t.Fatal(err)
	}
	if n := mustReplicas(t, f, "StatefulSet", "db-1"); n != 3 {
		t.Fatalf("replicas after revert = %d, want 3", n)
	}
	if m := mustHPAMin(t, f, "db-1"); m != "2" {
		t.Fatalf("hpa minReplicas after revert = %s, want 2", m)
	}
	f.WaitReadyPods(ctx, "app=db-1", 3)
}

// An HPA with minReplicas 0 (HPAScaleToZero) would keep acting on a target at 0; it is raised to 1
// for the window and put back to 0 by revert, exactly, idempotently.
func TestScaleToZeroRaisesHPAMinZero(t *testing.T) {
	c, f := fixture(t, kubefix.OptIn())
	f.Deployment(kubefix.Spec{Name: "cache", Replicas: 2})
	f.HPA("Deployment", "cache", kubefix.Ptr(int32(0)), 4)
	ctx := f.Ctx(time.Minute)
	e := env(t, c, runbooks.Policy{})
	act, err := kinj.ShardOutage{}.Prepare(ctx, shardOutage(runbooks.ShardOutage{PodTarget: workloadTarget("Deployment", "cache", f.NS), Mode: "scale-to-zero"}), e)
	if err != nil {
		t.Fatal(err)
	}
	if tg := act.Targets(); !strings.Contains(tg[0], "minReplicas 0 → 1 for the window") {
		t.Fatalf("targets = %q", tg)
	}
	rec, _ := act.Record()
	if err := act.Apply(ctx, func(_ context.Context, r json.RawMessage) error { rec = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if m := mustHPAMin(t, f, "cache"); m != "1" {
		t.Fatalf("hpa minReplicas during the window = %s, want 1", m)
	}
	if n := mustReplicas(t, f, "Deployment", "cache"); n != 0 {
		t.Fatalf("replicas during the window = %d", n)
	}
	var r struct {
		Workloads []struct {
			Replicas int32 `json:"replicas"`
			HPAs     []struct {
				MinReplicas *int32 `json:"minReplicas"`
				Raised      bool   `json:"raised"`
			} `json:"hpas"`
		} `json:"workloads"`
	}
	if err := json.Unmarshal(rec, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Workloads) != 1 || r.Workloads[0].Replicas != 2 || len(r.Workloads[0].HPAs) != 1 ||
		r.Workloads[0].HPAs[0].MinReplicas == nil || *r.Workloads[0].HPAs[0].MinReplicas != 0 || !r.Workloads[0].HPAs[0].Raised {
		t.Fatalf("ledger record %s does not hold replicas 2 and hpa minReplicas 0 (raised)", rec)
	}
	for i := range 2 {
		if err := (kinj.ShardOutage{}).Revert(ctx, rec, e); err != nil {
			t.Fatalf("revert %d: %v", i+1, err)
		}
		if n, m := mustReplicas(t, f, "Deployment", "cache"), mustHPAMin(t, f, "cache"); n != 2 || m != "0" {
			t.Fatalf("after revert %d: replicas %d, hpa minReplicas %s; want 2 and 0", i+1, n, m)
		}
	}
}

// A shard selected by label takes every Deployment and StatefulSet whose pods carry it, and
// nothing else. A workload already at 0 (an outage not recovered) is refused.
func TestScaleToZeroLabelShard(t *testing.T) {
	c, f := fixture(t, kubefix.OptIn())
	f.Deployment(kubefix.Spec{Name: "api-1", Replicas: 2, PodLabels: map[string]string{"shard": "1"}})
	f.Deployment(kubefix.Spec{Name: "api-2", Replicas: 2, PodLabels: map[string]string{"shard": "2"}})
	f.StatefulSet(kubefix.Spec{Name: "db-2", Replicas: 2, PodLabels: map[string]string{"shard": "2"}})
	ctx := f.Ctx(2 * time.Minute)
	e := env(t, c, runbooks.Policy{})
	fault := shardOutage(runbooks.ShardOutage{PodTarget: runbooks.PodTarget{Namespaces: []string{f.NS}, LabelSelector: "shard=2"}, Mode: "scale-to-zero"})
	act, err := kinj.ShardOutage{}.Prepare(ctx, fault, e)
	if err != nil {
		t.Fatal(err)
	}
	tg := strings.Join(act.Targets(), "\n")
	if len(act.Targets()) != 2 || !strings.Contains(tg, "deployment "+f.NS+"/api-2 ") || !strings.Contains(tg, "statefulset "+f.NS+"/db-2 ") {
		t.Fatalf("targets:\n%s", tg)
	}
	var rec json.RawMessage
	if err := act.Apply(ctx, func(_ context.Context, r json.RawMessage) error { rec = r; return nil }); err != nil {
		t.Fatal(err)
	}
	f.WaitReadyPods(ctx, "shard=2", 0)
	if n := mustReplicas(t, f, "Deployment", "api-1"); n != 2 {
		t.Fatalf("shard 1 was touched: %d replicas", n)
	}
	_, err = kinj.ShardOutage{}.Prepare(ctx, fault, e)
	if rule := refusedRule(t, err); rule != "target" || !strings.Contains(err.Error(), "already at 0 replicas") {
		t.Fatalf("second outage on a shard at 0: %v", err)
	}
	if err := (kinj.ShardOutage{}).Revert(ctx, rec, e); err != nil {
		t.Fatal(err)
	}
	f.WaitReadyPods(ctx, "shard=2", 4)
	// Blast radius: scale-to-zero takes 100% of each workload.
	_, err = kinj.ShardOutage{}.Prepare(ctx, fault, env(t, c, runbooks.Policy{MaxPercent: 50}))
	if rule := refusedRule(t, err); rule != "policy.maxPercent" {
		t.Fatalf("maxPercent 50: %v", err)
	}
	_, err = kinj.ShardOutage{}.Prepare(ctx, fault, env(t, c, runbooks.Policy{MaxWorkloads: 1}))
	if rule := refusedRule(t, err); rule != "policy.maxWorkloads" {
		t.Fatalf("maxWorkloads 1: %v", err)
	}
	_, err = kinj.ShardOutage{}.Prepare(ctx, fault, env(t, c, runbooks.Policy{MaxPods: 3}))
	if rule := refusedRule(t, err); rule != "policy.maxPods" {
		t.Fatalf("maxPods 3: %v", err)
	}
}

// keep-down holds the shard at 0 ready pods for the whole window, deleting the pods the
// ReplicaSet keeps creating as the watch reports them; when the window ends the shard comes back.
func TestKeepDown(t *testing.T) {
	c, f := fixture(t, kubefix.OptIn())
	f.Deployment(kubefix.Spec{Name: "api-3", Replicas: 3, PodLabels: map[string]string{"shard": "3"}})
	f.Deployment(kubefix.Spec{Name: "api-4", Replicas: 2, PodLabels: map[string]string{"shard": "4"}})
	ctx := f.Ctx(2 * time.Minute)
	act, err := kinj.ShardOutage{}.Prepare(ctx, shardOutage(runbooks.ShardOutage{
		PodTarget: runbooks.PodTarget{Namespaces: []string{f.NS}, LabelSelector: "shard=3"}, Mode: "keep-down"}), env(t, c, runbooks.Policy{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(act.Targets()); n != 4 { // 3 pods + "every pod ... that appears"
		t.Fatalf("targets = %q", act.Targets())
	}
	window, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	var (
		mu     sync.Mutex
		events []injectors.Event
		last   json.RawMessage
		done   = make(chan error, 1)
	)
	rec := func(_ context.Context, r json.RawMessage) error { mu.Lock(); last = r; mu.Unlock(); return nil }
	if err := act.Apply(window, rec); err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- act.(injectors.Sustainer).Sustain(window, rec,
			func(e injectors.Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	}()
	// kwok turns a scheduled pod Ready within milliseconds (a real kubelet needs seconds to start
	// containers), so a returning pod can be seen Ready for an instant before its deletion lands.
	// What keep-down promises is that none stays: no pod is seen Ready for longer than maxReady,
	// and almost every look finds the shard with no Ready pod at all.
	const maxReady = 500 * time.Millisecond
	readySince := map[string]time.Time{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	checks, clean := 0, 0
	for window.Err() == nil {
		ps, err := f.LivePods(ctx, "shard=3")
		if err != nil {
			t.Fatal(err)
		}
		now, n := time.Now(), 0
		for i := range ps {
			p := &ps[i]
			if !kubefix.Ready(p) {
				continue
			}
			n++
			uid := string(p.UID)
			if _, ok := readySince[uid]; !ok {
				readySince[uid] = now
			}
			if d := now.Sub(readySince[uid]); d > maxReady {
				cancel()
				t.Fatalf("pod %s (created %s) has been Ready for %s during keep-down; sustain: %v", p.Name, p.CreationTimestamp, d, <-done)
			}
		}
		checks++
		if n == 0 {
			clean++
		}
		select {
		case <-window.Done():
		case <-tick.C:
		}
	}
	if clean < checks*9/10 {
		t.Fatalf("only %d of %d looks found the shard with no Ready pod", clean, checks)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	deleted := 0
	for _, e := range events {
		if strings.HasPrefix(e.Message, "deleted a returning pod") {
			deleted++
		}
	}
	mu.Unlock()
	var r struct {
		Deleted int `json:"deleted"`
	}
	if err := json.Unmarshal(last, &r); err != nil {
		t.Fatalf("last ledger record %q: %v", last, err)
	}
	if deleted < 3 || r.Deleted != deleted+3 {
		t.Fatalf("the ReplicaSet's replacements were not deleted as they came: %d deletions, the ledger record says %d (3 at apply)", deleted, r.Deleted)
	}
	t.Logf("%d of %d looks found 0 Ready pods (%d pods seen Ready for an instant); %d returning pods deleted", clean, checks, len(readySince), deleted)
	if n := mustReplicas(t, f, "Deployment", "api-4"); n != 2 {
		t.Fatalf("shard 4 touched")
	}
	f.WaitReadyPods(ctx, "shard=4", 2)
	f.WaitReadyPods(ctx, "shard=3", 3) // the window is over: the ReplicaSet brings the shard back

}
