//go:build linux

package kubescale_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/runbooks"
)

const (
	namespace   = "scale"
	nodes       = 50
	perWorkload = 200 // one Deployment per node: 50 × 200 = 10,000 pods
	totalPods   = nodes * perWorkload
)

// The control plane runs its controllers with client rate limits raised (the defaults, 20 requests
// per second for kube-controller-manager, would take minutes to create 10,000 pods).
var cluster = &kube.Shared{
	Options: []kube.Option{
		kube.WithStartTimeout(3 * time.Minute),
		kube.WithAPIServerArgs("--max-requests-inflight=1000", "--max-mutating-requests-inflight=500"),
		kube.WithControllerManagerArgs("--kube-api-qps=1000", "--kube-api-burst=2000",
			"--concurrent-replicaset-syncs=20", "--concurrent-deployment-syncs=20"),
	},
	Setup: func(ctx context.Context, c *kube.Cluster) error { return c.AddNodes(ctx, nodes, "scale") },
}

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Stop()
	os.Exit(code)
}

// fleet creates the 10,000 pods once per process.
var fleet struct {
	once sync.Once
	err  error
	took time.Duration
}

// scaleCluster returns the cluster with its 10,000 Ready pods, or skips.
func scaleCluster(b *testing.B) *kube.Cluster {
	b.Helper()
	if os.Getenv("FAULTLINE_BENCH_SCALE") != "1" {
		b.Skip("set FAULTLINE_BENCH_SCALE=1 to run the 10,000-pod benchmarks (setup takes minutes)")
	}
	c := cluster.Get(b)
	fleet.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		began := time.Now()
		fleet.err = createFleet(ctx, b, c)
		fleet.took = time.Since(began)
	})
	if fleet.err != nil {
		b.Fatal(fleet.err)
	}
	b.Logf("fleet: %d pods on %d kwok nodes, set up in %s", totalPods, nodes, fleet.took.Round(time.Second))
	return c
}

// createFleet creates one Deployment of 200 pods per node, each bound to its node by nodeName so
// the scheduler (whose client is not configurable here) stays out of the way, and waits until all
// 10,000 pods are available.
func createFleet(ctx context.Context, b *testing.B, c *kube.Cluster) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{runbooks.OptInLabel: "enabled"}}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	for i := range nodes {
		labels := map[string]string{"app": "scale", "shard": strconv.Itoa(i)}
		r := int32(perWorkload)
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("shard-%d", i), Namespace: namespace},
			Spec: appsv1.DeploymentSpec{
				Replicas: &r,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						NodeName:   fmt.Sprintf("scale-%d", i),
						Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
					},
				},
			},
		}
		if _, err := c.Client.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create deployment %s: %w", d.Name, err)
		}
	}
	last := time.Now()
	return waitAvailable(ctx, c, func(avail int) {
		if time.Since(last) > 30*time.Second {
			b.Logf("fleet: %d/%d pods available", avail, totalPods)
			last = time.Now()
		}
	})
}

// waitAvailable waits until the Deployments report all 10,000 replicas available again.
func waitAvailable(ctx context.Context, c *kube.Cluster, progress func(int)) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		l, err := c.Client.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
		if err == nil {
			avail, current := 0, true
			for _, d := range l.Items {
				avail += int(d.Status.AvailableReplicas)
				current = current && d.Status.ObservedGeneration >= d.Generation && d.Status.Replicas == perWorkload
			}
			if progress != nil {
				progress(avail)
			}
			if avail == totalPods && current {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d available pods: %w (last error: %v)", totalPods, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// prodConfig is the admin configuration with faultline's production client limits (50 QPS, burst
// 100), so that what is measured is what a user gets.
func prodConfig(c *kube.Cluster) *rest.Config {
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 50, 100
	return cfg
}

// BenchmarkScaleListAllPods is the baseline: one LIST of all 10,000 pods through the same client
// the pod-kill injector uses.
func BenchmarkScaleListAllPods(b *testing.B) {
	c := scaleCluster(b)
	kc, err := kubeclient.FromConfig(prodConfig(c), "")
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kc.Clientset()
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	n := 0
	for b.Loop() {
		l, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=scale"})
		if err != nil {
			b.Fatal(err)
		}
		n = len(l.Items)
	}
	if n != totalPods {
		b.Fatalf("listed %d pods, want %d", n, totalPods)
	}
}

// BenchmarkScaleKill1Percent selects 1 % of the 10,000 pods with the pod-kill injector (Prepare:
// list, resolve owners, opt-in and blast-radius checks) and kills them (Apply). Between rounds the
// ReplicaSets bring the pods back; that wait is not timed.
func BenchmarkScaleKill1Percent(b *testing.B) {
	c := scaleCluster(b)
	b.Run("client-50qps", func(b *testing.B) { benchKill(b, c, prodConfig(c)) })
	// The same with the client's rate limit out of the way, to tell the limiter from the server.
	b.Run("client-unthrottled", func(b *testing.B) {
		cfg := prodConfig(c)
		cfg.QPS, cfg.Burst = 5000, 10000
		benchKill(b, c, cfg)
	})
}

func benchKill(b *testing.B, c *kube.Cluster, cfg *rest.Config) {
	kc, err := kubeclient.FromConfig(cfg, "")
	if err != nil {
		b.Fatal(err)
	}
	env := injectors.Env{RunID: "bench", Kube: kc, Policy: runbooks.Policy{MaxPods: 100}}
	fault := runbooks.Fault{Name: "kill-1pct", PodKill: &runbooks.PodKill{
		PodTarget: runbooks.PodTarget{Namespaces: []string{namespace}, LabelSelector: "app=scale"},
		Mode:      runbooks.ModeFixedPercent, Value: 1,
	}}
	ctx := b.Context()
	var sel, kill time.Duration
	killed := 0
	for b.Loop() {
		b.StopTimer()
		if err := waitAvailable(ctx, c, nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		act, err := kubernetes.PodKill{}.Prepare(ctx, fault, env)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := act.Apply(ctx, func(context.Context, json.RawMessage) error { return nil }); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		sel += t1.Sub(t0)
		kill += t2.Sub(t1)
		killed = len(act.Targets())
	}
	if killed != totalPods/100 {
		b.Fatalf("killed %d pods, want %d", killed, totalPods/100)
	}
	b.ReportMetric(float64(sel.Milliseconds())/float64(b.N), "select-ms/op")
	b.ReportMetric(float64(kill.Milliseconds())/float64(b.N), "kill-ms/op")
	b.ReportMetric(float64(killed), "pods/op")
}

// BenchmarkScaleFaultlineRun runs the faultline binary on a runbook that kills 1 % of the 10,000
// pods, with the workload recorder watching all 50 Deployments and their 10,000 pods and a
// Kubernetes guardrail on one of them, and reports the process's peak resident memory (VmHWM, read
// from /proc/PID/status every 10ms while it runs). The baseline is the same binary running the same kind of
// experiment against one Deployment (200 pods watched).
func BenchmarkScaleFaultlineRun(b *testing.B) {
	c := scaleCluster(b)
	dir := b.TempDir()
	bin := filepath.Join(dir, "faultline")
	build := exec.CommandContext(b.Context(), "go", "build", "-o", bin, "github.com/faultline-dev/faultline/cmd/faultline")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build faultline: %v\n%s", err, out)
	}
	for _, tc := range []struct{ name, target, mode string }{
		{"baseline-200-pods", "{workload: {kind: Deployment, namespace: scale, name: shard-7}, mode: fixed, value: 2}", "2 of 200"},
		{"10000-pods", "{namespaces: [scale], labelSelector: app=scale, mode: fixed-percent, value: 1}", "100 of 10,000"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var hwm, took int64
			var res runResult
			for b.Loop() {
				if err := waitAvailable(b.Context(), c, nil); err != nil {
					b.Fatal(err)
				}
				hwm, res, took = runFaultline(b, c, bin, dir, tc.target)
			}
			b.ReportMetric(float64(hwm)/1024, "peak-RSS-MB")
			b.ReportMetric(float64(took), "run-ms")
			b.ReportMetric(float64(res.pods), "pods-recorded")
			b.ReportMetric(float64(res.slowest.Milliseconds()), "slowest-recovery-ms")
			b.Logf("%s: verdict %s, %d workloads and %d pod timelines recorded, slowest workload recovered in %s; peak RSS %.1f MB",
				tc.mode, res.verdict, res.workloads, res.pods, res.slowest, float64(hwm)/1024)
		})
	}
}

type runResult struct {
	verdict         string
	workloads, pods int
	slowest         time.Duration
}

// runFaultline runs one `faultline run` and returns its peak RSS in KiB, what it recorded and how
// long it ran in milliseconds.
func runFaultline(b *testing.B, c *kube.Cluster, bin, dir, target string) (int64, runResult, int64) {
	b.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Get(b.Context(), "kube-system", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	rb := filepath.Join(dir, "scale.yaml")
	if err := os.WriteFile(rb, []byte(fmt.Sprintf(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: scale}
environment:
  name: bench
  type: golden-copy
  kubernetes: {clusterID: %q, server: %q}
policy: {maxPods: 100}
guardrails:
  - name: shard-7-available
    interval: 1s
    kubernetes:
      workload: {kind: Deployment, namespace: scale, name: shard-7}
      availableReplicas: {minPercent: 50}
experiments:
  - name: kill
    duration: 5s
    faults: [{podKill: %s}]
    recovery: {within: 2m}
`, string(ns.UID), c.Server, target)), 0o600); err != nil {
		b.Fatal(err)
	}
	result := filepath.Join(dir, "result.json")
	cmd := exec.CommandContext(b.Context(), bin, "--state-dir", filepath.Join(dir, "state"), "run",
		"--kubeconfig", c.Kubeconfig, "--result-file", result, "-o", "json", rb)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if os.Getenv("FAULTLINE_SCALE_GCTRACE") == "1" {
		cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
		defer func() { b.Logf("gctrace:\n%s", out.String()) }()
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	hwm := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			v, err := vmHWM(cmd.Process.Pid)
			if err != nil {
				break // the process has exited
			}
			peak = max(peak, v)
		}
		hwm <- peak
	}()
	werr := cmd.Wait()
	took := time.Since(began).Milliseconds()
	// Not ru_maxrss from wait4: for a child started by fork+exec it also counts the memory of the
	// forked copy of this (large) test process before the exec. VmHWM belongs to the new image only;
	// a high-water mark, so the last poll (at most 10ms before the exit) holds every earlier peak.
	peak := <-hwm
	data, err := os.ReadFile(result)
	if err != nil {
		b.Fatalf("faultline run: %v; no result: %v\n%s", werr, err, out.String())
	}
	var doc struct {
		Verdict     string `json:"verdict"`
		Reason      string `json:"reason"`
		Experiments []struct {
			Recordings []struct {
				Recorder  string `json:"recorder"`
				Recovered bool   `json:"recovered"`
				Data      struct {
					Workloads []struct {
						TimeToRecover string `json:"timeToRecover"`
					} `json:"workloads"`
					Pods []json.RawMessage `json:"pods"`
				} `json:"data"`
			} `json:"recordings"`
		} `json:"experiments"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		b.Fatal(err)
	}
	if werr != nil || doc.Verdict != "passed" || len(doc.Experiments) != 1 || len(doc.Experiments[0].Recordings) != 1 {
		b.Fatalf("faultline run: %v, verdict %s: %s\n%s", werr, doc.Verdict, doc.Reason, out.String())
	}
	rec := doc.Experiments[0].Recordings[0]
	res := runResult{verdict: doc.Verdict, workloads: len(rec.Data.Workloads), pods: len(rec.Data.Pods)}
	for _, w := range rec.Data.Workloads {
		if d, err := time.ParseDuration(w.TimeToRecover); err == nil {
			res.slowest = max(res.slowest, d)
		}
	}
	return peak, res, took
}

// vmHWM reads a process's peak resident set size (KiB) from /proc/PID/status.
func vmHWM(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
