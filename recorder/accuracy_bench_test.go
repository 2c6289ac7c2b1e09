package recorder_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
)

// BenchmarkReadyAccuracy measures how close the recorder's time-to-Ready of a replaced pod is to
// the truth, against the two other figures one could use: the API server's own timestamps
// (deletionTimestamp − grace, Ready's lastTransitionTime: whole seconds) and a separate raw watch.
//
// The truth is known because the benchmark plays the kubelet: the Deployment's pods are bound to a
// Node no kwok manages, and a goroutine marks each new pod Ready after a random delay (50–1050 ms,
// so that the moments fall anywhere within a second), bracketing the status write between two clock
// reads; the kill is a DELETE bracketed the same way. Truth = midpoint(ready write) −
// midpoint(delete); its own uncertainty (half the two brackets) is reported too.
//
//	go test ./recorder -run '^$' -bench ReadyAccuracy -benchtime 1x
func BenchmarkReadyAccuracy(b *testing.B) {
	c := cluster.Get(b)
	cs := c.Client
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	const ns, node, replicas, kills = "accuracy", "manual-0", 5, 60
	createNamespace(ctx, b, cs, ns)
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	kl := &fakeKubelet{cs: cs, ns: ns, node: node, truth: map[string][2]time.Time{}, raw: map[string]time.Time{}, rawGone: map[string]time.Time{}}
	kctx, stopKubelet := context.WithCancel(ctx)
	defer stopKubelet()
	if err := kl.start(kctx); err != nil {
		b.Fatal(err)
	}

	zero := int64(0)
	r := int32(replicas)
	tmpl := podTemplate("acc", "")
	tmpl.Spec.NodeName = node // bound at creation: the scheduler is not involved
	tmpl.Spec.TerminationGracePeriodSeconds = &zero
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "acc", Namespace: ns},
		Spec:       appsv1.DeploymentSpec{Replicas: &r, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "acc"}}, Template: tmpl},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	waitAvailable(ctx, b, cs, ns, "acc", replicas)

	type sample struct{ truth, halfWidth, rec, api, raw, pipeline time.Duration }
	var samples []sample
	for b.Loop() {
		x := &runbooks.Experiment{Name: "accuracy", Faults: []runbooks.Fault{podKill(ns, "app=acc")}}
		s, err := (&recorder.Workloads{}).Start(ctx, x, envFor(b, c))
		if err != nil {
			b.Fatal(err)
		}
		killAt := map[string][2]time.Time{}
		for range kills {
			waitReadyPods(ctx, b, cs, ns, "app=acc", replicas)
			list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=acc"})
			if err != nil {
				b.Fatal(err)
			}
			victim := list.Items[rand.IntN(len(list.Items))]
			// Land the kill anywhere within a second too.
			select {
			case <-time.After(time.Duration(rand.IntN(1000)) * time.Millisecond):
			case <-ctx.Done():
				b.Fatal(ctx.Err())
			}
			k0 := time.Now()
			if err := cs.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
				b.Fatal(err)
			}
			killAt[string(victim.UID)] = [2]time.Time{k0, time.Now()}
		}
		waitReadyPods(ctx, b, cs, ns, "app=acc", replicas)
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res := s.Finish(fctx, experiments.RecordingEnd{RevertedAt: time.Now()})
		cancel()
		doc := res.Data.(*recorder.Document)
		kl.mu.Lock()
		for _, p := range doc.Pods {
			k, ok := killAt[p.UID]
			rp := p.Replacement
			if !ok || rp == nil || rp.ReadyAt == nil {
				b.Fatalf("pod %s: no kill bracket or no Ready replacement: %+v", p.Pod, p)
			}
			t, ok := kl.truth[rp.UID]
			if !ok {
				b.Fatalf("replacement %s was not made Ready by the benchmark's kubelet", rp.Pod)
			}
			mid := func(a [2]time.Time) time.Time { return a[0].Add(a[1].Sub(a[0]) / 2) }
			sm := sample{
				truth:     mid(t).Sub(mid(k)),
				halfWidth: (t[1].Sub(t[0]) + k[1].Sub(k[0])) / 2,
				rec:       rp.ReadyAt.At.Sub(p.KilledAt.At),
				api:       rp.ReadyAt.APIServer.Sub(apiKill(p)),
				raw:       kl.raw[rp.UID].Sub(kl.rawGone[p.UID]),
				pipeline:  rp.ReadyAt.At.Sub(kl.raw[rp.UID]),
			}
			samples = append(samples, sm)
		}
		kl.mu.Unlock()
	}

	abs := func(d time.Duration) time.Duration { return max(d, -d) }
	errs := func(f func(sample) time.Duration) []time.Duration {
		out := make([]time.Duration, len(samples))
		for i, s := range samples {
			out[i] = f(s)
		}
		slices.Sort(out)
		return out
	}
	q := func(ds []time.Duration, p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	rec := errs(func(s sample) time.Duration { return abs(s.rec - s.truth) })
	api := errs(func(s sample) time.Duration { return abs(s.api - s.truth) })
	raw := errs(func(s sample) time.Duration { return abs(s.raw - s.truth) })
	// The part of the error the truth's own bracket cannot explain.
	recOut := errs(func(s sample) time.Duration { return max(abs(s.rec-s.truth)-s.halfWidth, 0) })
	pipe := errs(func(s sample) time.Duration { return s.pipeline })
	hw := errs(func(s sample) time.Duration { return s.halfWidth })
	truths := errs(func(s sample) time.Duration { return s.truth })
	b.Logf("%d kills; true time to Ready p50 %s (%s–%s); truth bracket half-width p50 %s max %s",
		len(samples), q(truths, 0.5), truths[0], truths[len(truths)-1], q(hw, 0.5), hw[len(hw)-1])
	for _, row := range []struct {
		name string
		ds   []time.Duration
	}{{"recorder (watch arrival)", rec}, {"recorder beyond bracket", recOut}, {"API server timestamps", api}, {"separate raw watch", raw}} {
		b.Logf("|error| %-26s p50 %8s  p95 %8s  max %8s", row.name, q(row.ds, 0.5).Round(time.Millisecond/10), q(row.ds, 0.95).Round(time.Millisecond/10), row.ds[len(row.ds)-1].Round(time.Millisecond/10))
	}
	b.Logf("recorder Ready arrival − raw watch arrival: p50 %s, max %s", q(pipe, 0.5), pipe[len(pipe)-1])
	b.ReportMetric(float64(q(rec, 0.5).Microseconds())/1000, "rec-p50-err-ms")
	b.ReportMetric(float64(rec[len(rec)-1].Microseconds())/1000, "rec-max-err-ms")
	b.ReportMetric(float64(q(api, 0.5).Microseconds())/1000, "api-p50-err-ms")
	b.ReportMetric(float64(api[len(api)-1].Microseconds())/1000, "api-max-err-ms")
}

// apiKill is the API server's time of the kill: deletionTimestamp − grace when the deleted object
// carries one, else the replacement's creationTimestamp (the ReplicaSet controller creates it within
// milliseconds of the deletion).
func apiKill(p recorder.PodTimeline) time.Time {
	if p.KilledAt.APIServer != nil {
		return *p.KilledAt.APIServer
	}
	return *p.Replacement.CreatedAt.APIServer
}

// fakeKubelet marks the pods bound to its node Ready after a random delay, recording when it
// wrote the status, and keeps an independent raw watch of the namespace's pods for comparison.
type fakeKubelet struct {
	cs       kubernetes.Interface
	ns, node string

	mu      sync.Mutex
	truth   map[string][2]time.Time // pod UID → clock reads around the Ready status write
	raw     map[string]time.Time    // pod UID → arrival of the first event showing it Ready (raw watch)
	rawGone map[string]time.Time    // pod UID → arrival of its deletion (raw watch)
}

func (k *fakeKubelet) start(ctx context.Context) error {
	w, err := k.cs.CoreV1().Pods(k.ns).Watch(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + k.node})
	if err != nil {
		return fmt.Errorf("watch pods on %s: %w", k.node, err)
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			now := time.Now()
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			uid := string(p.UID)
			k.mu.Lock()
			switch {
			case ev.Type == watch.Deleted:
				k.rawGone[uid] = now
			case ev.Type == watch.Added && !ready(p):
				go k.markReady(ctx, p.Name, uid, time.Duration(50+rand.IntN(1000))*time.Millisecond)
			case ready(p):
				if _, seen := k.raw[uid]; !seen {
					k.raw[uid] = now
				}
			}
			k.mu.Unlock()
		}
	}()
	return nil
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (k *fakeKubelet) markReady(ctx context.Context, name, uid string, after time.Duration) {
	select {
	case <-time.After(after): // the simulated container start-up: this sleep is the thing measured
	case <-ctx.Done():
		return
	}
	for range 5 { // a conflicting write (none is expected) is retried on the fresh object
		p, err := k.cs.CoreV1().Pods(k.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || string(p.UID) != uid {
			return
		}
		t0 := time.Now()
		now := metav1.NewTime(t0)
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: p.CreationTimestamp},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		if _, err := k.cs.CoreV1().Pods(k.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			continue
		}
		t1 := time.Now()
		k.mu.Lock()
		k.truth[uid] = [2]time.Time{t0, t1}
		k.mu.Unlock()
		return
	}
}
