package recorder_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
)

// createGhostHPAs creates n HPAs in ns whose target does not exist: the real HPA controller
// reconciles them (a FailedGetScale event every sync, as a broken HPA in a real cluster does) but
// never writes their replica counts, so the benchmark can drive those itself.
func createGhostHPAs(ctx context.Context, b *testing.B, cs kubernetes.Interface, ns string, n int) []string {
	b.Helper()
	createNamespace(ctx, b, cs, ns)
	one := int32(1)
	var names []string
	for i := range n {
		name := fmt.Sprintf("ghost-%02d", i)
		h := &autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
				MinReplicas:    &one, MaxReplicas: 100,
			},
		}
		if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		names = append(names, name)
	}
	// Wait for the controller's first status write (AbleToScale=False), which would otherwise race
	// with the benchmark's own writes.
	for _, name := range names {
		waitHPA(ctx, b, cs, ns, name, "reconciled once", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
			return condition(h, autoscalingv2.AbleToScale) != ""
		})
	}
	return names
}

// setHPAReplicas writes status.currentReplicas/desiredReplicas and returns the clock reads around
// the write that stored it.
func setHPAReplicas(ctx context.Context, cs kubernetes.Interface, ns, name string, n int32) (before, after time.Time, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		h.Status.CurrentReplicas, h.Status.DesiredReplicas = n, n
		before = time.Now()
		_, err = cs.AutoscalingV2().HorizontalPodAutoscalers(ns).UpdateStatus(ctx, h, metav1.UpdateOptions{})
		after = time.Now()
		return err
	})
	return before, after, err
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkAutoscalerTransitionError measures how close the times the HPA watch records are to
// the moment each change was stored. Real HPA transitions take 10–30 s each, so the benchmark
// drives the replica counts itself: it writes status.currentReplicas/desiredReplicas of an HPA
// whose target does not exist (the real controller leaves them alone), 40 times, bracketing each
// write between two clock reads. Truth = the bracket's midpoint.
//
//	go test ./recorder -run '^$' -bench AutoscalerTransitionError -benchtime 1x
func BenchmarkAutoscalerTransitionError(b *testing.B) {
	c := cluster.Get(b)
	cs := c.Client
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	const transitions = 40
	ns := fmt.Sprintf("hpa-accuracy-%d", time.Now().UnixNano()%1e6) // -count N runs it again on the same cluster
	name := createGhostHPAs(ctx, b, cs, ns, 1)[0]
	for b.Loop() {
		x := &runbooks.Experiment{Name: "acc", Faults: []runbooks.Fault{{ProcessPause: &runbooks.ProcessPause{}}},
			Record: &runbooks.Record{Autoscalers: []runbooks.AutoscalerSpec{{HPA: ns + "/" + name}}}}
		s, err := (&recorder.Autoscalers{}).Start(ctx, x, envFor(b, c))
		if err != nil {
			b.Fatal(err)
		}
		s.FaultApplied(experiments.AppliedFault{Kind: "processPause", At: time.Now()})
		truth := map[float64][2]time.Time{}
		tick := time.NewTicker(150 * time.Millisecond) // a schedule of writes, not a wait for a condition
		for i := range transitions {
			<-tick.C
			n := int32(50 + i) // up, down, up, ...: every level distinct (50, 49, 52, 47, ...), so each sample names its write
			if i%2 == 1 {
				n = int32(50 - i)
			}
			before, after, err := setHPAReplicas(ctx, cs, ns, name, n)
			if err != nil {
				b.Fatal(err)
			}
			truth[float64(n)] = [2]time.Time{before, after}
		}
		tick.Stop()
		fctx, fcancel := context.WithTimeout(ctx, 3*time.Second)
		rec := s.Finish(fctx, experiments.RecordingEnd{RevertedAt: time.Now()})
		fcancel()
		doc := rec.Data.(*recorder.AutoscalerDocument)
		var errs, beyond, brackets []time.Duration
		for _, ch := range doc.Autoscalers[0].Changes {
			w, ok := truth[ch.Current]
			if !ok {
				continue
			}
			mid := w[0].Add(w[1].Sub(w[0]) / 2)
			half := w[1].Sub(w[0]) / 2
			e := ch.At.Sub(mid).Abs()
			errs, brackets = append(errs, e), append(brackets, half)
			beyond = append(beyond, max(e-half, 0))
		}
		if len(errs) != transitions {
			b.Fatalf("recorded %d of %d transitions", len(errs), transitions)
		}
		b.ReportMetric(float64(pct(errs, 0.5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(pct(errs, 0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(slices.Max(errs).Microseconds())/1000, "max-ms")
		b.ReportMetric(float64(pct(beyond, 0.99).Microseconds())/1000, "beyond-bracket-p99-ms")
		b.ReportMetric(float64(pct(brackets, 0.5).Microseconds())/1000, "bracket-p50-ms")
	}
}

// procStatus reads VmRSS and VmHWM (kB) of this process.
func procStatus(b *testing.B) (rss, hwm int) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// BenchmarkAutoscalerRecordingCost measures what recording 50 HPAs costs this process: CPU
// seconds and memory over a period with the recorder, against the same period without it, in the
// same run. In both periods the HPAs change all the time: one of them every 200 ms (each every
// 10 s), and the real controller emits a FailedGetScale event per HPA per 5 s sync.
//
//	FAULTLINE_BENCH_RECORD_FOR=10m go test ./recorder -run '^$' -bench AutoscalerRecordingCost -benchtime 1x -timeout 30m
func BenchmarkAutoscalerRecordingCost(b *testing.B) {
	period := time.Minute
	if v := os.Getenv("FAULTLINE_BENCH_RECORD_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("FAULTLINE_BENCH_RECORD_FOR: %v", err)
		}
		period = d
	}
	c := cluster.Get(b)
	cs := c.Client
	ctx, cancel := context.WithTimeout(b.Context(), 2*period+5*time.Minute)
	defer cancel()
	const hpas = 50
	var namespaces []string
	for i := range 5 {
		namespaces = append(namespaces, fmt.Sprintf("cost-%d-%d", i, time.Now().UnixNano()%1e6))
	}
	type hpaRef struct{ ns, name string }
	var all []hpaRef
	var specs []runbooks.AutoscalerSpec
	for _, ns := range namespaces {
		for _, n := range createGhostHPAs(ctx, b, cs, ns, hpas/len(namespaces)) {
			all = append(all, hpaRef{ns, n})
			specs = append(specs, runbooks.AutoscalerSpec{HPA: ns + "/" + n})
		}
	}
	// churn moves one HPA every 200 ms for d.
	churn := func(d time.Duration) {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		end := time.After(d)
		for i := 0; ; i++ {
			select {
			case <-end:
				return
			case <-tick.C:
			}
			h := all[i%len(all)]
			if _, _, err := setHPAReplicas(ctx, cs, h.ns, h.name, int32(2+(i/len(all))%2)); err != nil {
				b.Fatal(err)
			}
		}
	}
	for b.Loop() {
		runtime.GC()
		cpu0 := cpuSeconds(b)
		churn(period)
		runtime.GC()
		cpuBase := cpuSeconds(b) - cpu0
		rssBase, _ := procStatus(b)

		x := &runbooks.Experiment{Name: "cost", Faults: []runbooks.Fault{{ProcessPause: &runbooks.ProcessPause{}}},
			Record: &runbooks.Record{Autoscalers: specs}}
		cpu1 := cpuSeconds(b)
		s, err := (&recorder.Autoscalers{}).Start(ctx, x, injectors.Env{Kube: envFor(b, c).Kube})
		if err != nil {
			b.Fatal(err)
		}
		s.FaultApplied(experiments.AppliedFault{Kind: "processPause", At: time.Now()})
		churn(period)
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		rssRec, hwm := procStatus(b)
		fctx, fcancel := context.WithTimeout(ctx, time.Second)
		rec := s.Finish(fctx, experiments.RecordingEnd{RevertedAt: time.Now()})
		fcancel()
		cpuRec := cpuSeconds(b) - cpu1
		events := 0
		for _, a := range rec.Data.(*recorder.AutoscalerDocument).Autoscalers {
			events += len(a.Events) + len(a.Changes)
		}
		if n := len(rec.Timelines); n != hpas {
			b.Fatalf("%d timelines, want %d", n, hpas)
		}
		b.ReportMetric(period.Seconds(), "period-s")
		b.ReportMetric(cpuBase, "cpu-s-without")
		b.ReportMetric(cpuRec, "cpu-s-with")
		b.ReportMetric(cpuRec-cpuBase, "cpu-s-recorder")
		b.ReportMetric(float64(rssBase)/1024, "rss-MB-without")
		b.ReportMetric(float64(rssRec)/1024, "rss-MB-with")
		b.ReportMetric(float64(hwm)/1024, "rss-peak-MB")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB-with")
		b.ReportMetric(float64(events), "changes+events")
	}
}
