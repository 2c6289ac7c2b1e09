package recorder_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	kubeinj "github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/recorder"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/guardrail"
	"github.com/faultline-dev/faultline/safety/ledger"
	"github.com/faultline-dev/faultline/safety/policy"
)

// A control plane whose HPA controller really scales: metrics-server reads the pod CPU kwok
// reports, which the tests set per namespace. Only the autoscaler tests start it.
var hpaCluster = &kube.Shared{
	Options: []kube.Option{kube.WithMetricsServer()},
	Setup:   func(ctx context.Context, c *kube.Cluster) error { return c.AddNodes(ctx, 1, "hpa") },
}

// createScaledDeployment creates a Deployment of one pod requesting 100m CPU and an HPA on it
// (target 50% CPU, 1..maxReplicas, no stabilization window either way so that the test sees the
// controller's decisions at once), and waits until the HPA has its first metric.
func createScaledDeployment(ctx context.Context, t testing.TB, c *kube.Cluster, ns, name string, maxReplicas int32) {
	t.Helper()
	cs := c.Client
	createNamespace(ctx, t, cs, ns)
	if err := c.SetPodCPU(ctx, ns, "20m"); err != nil { // idle: 20% of the request
		t.Fatal(err)
	}
	one := int32(1)
	tpl := podTemplate(name, "")
	tpl.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: tpl},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAvailable(ctx, t, cs, ns, name, 1)
	zero, fifty := int32(0), int32(50)
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			MinReplicas:    &one, MaxReplicas: maxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &fifty}}}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleUp:   &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &zero},
				ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &zero},
			},
		},
	}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitHPA(ctx, t, cs, ns, name, "its first CPU metric", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		return h.Status.CurrentMetrics != nil && condition(h, autoscalingv2.ScalingActive) == "True"
	})
}

func condition(h *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType) string {
	for _, c := range h.Status.Conditions {
		if c.Type == typ {
			return string(c.Status)
		}
	}
	return ""
}

func waitHPA(ctx context.Context, t testing.TB, cs kubernetes.Interface, ns, name, what string, cond func(*autoscalingv2.HorizontalPodAutoscaler) bool) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	var last *autoscalingv2.HorizontalPodAutoscaler
	pollUntil(ctx, t, fmt.Sprintf("hpa %s/%s: %s", ns, name, what), func(ctx context.Context) (string, bool, error) {
		h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", false, err
		}
		last = h
		return fmt.Sprintf("current %d desired %d", h.Status.CurrentReplicas, h.Status.DesiredReplicas), cond(h), nil
	})
	return last
}

func hpaKillExperiment(ns, name string) *runbooks.Experiment {
	return &runbooks.Experiment{Name: "load", Faults: []runbooks.Fault{{Name: "kill", PodKill: &runbooks.PodKill{
		PodTarget: runbooks.PodTarget{Workload: &runbooks.WorkloadRef{Kind: "Deployment", Namespace: ns, Name: name}}, Mode: runbooks.ModeOne,
	}}}}
}

var newSizeRE = regexp.MustCompile(`New size: (\d+)`)

// The real HPA controller scales out under load during the fault, in again, out again (thrash: a
// deliberately zero stabilization window), and back to its baseline after the revert. The recorded
// timeline is checked against the HPA's own status and the SuccessfulRescale events.
func TestAutoscalersRecordRealHPA(t *testing.T) {
	c := hpaCluster.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	const ns, name = "hpa-real", "web"
	createScaledDeployment(ctx, t, c, ns, name, 3)
	cs := c.Client
	kc, err := kubeclient.FromConfig(c.Config, "")
	if err != nil {
		t.Fatal(err)
	}

	s, err := (&recorder.Autoscalers{}).Start(ctx, hpaKillExperiment(ns, name), injectors.Env{Kube: kc})
	if err != nil || s == nil {
		t.Fatalf("Start = %v, %v", s, err)
	}
	fault := time.Now()
	s.FaultApplied(experiments.AppliedFault{Kind: "podKill", At: fault})
	setCPU := func(cpu string) {
		t.Helper()
		if err := c.SetPodCPU(ctx, ns, cpu); err != nil {
			t.Fatal(err)
		}
	}
	// 300m per pod is 600% of the 50% target: the HPA wants 6 and is limited to 3.
	setCPU("300m")
	waitHPA(ctx, t, cs, ns, name, "scaled out to 3", func(h *autoscalingv2.HorizontalPodAutoscaler) bool { return h.Status.DesiredReplicas == 3 })
	setCPU("20m")
	waitHPA(ctx, t, cs, ns, name, "scaled in to 1", func(h *autoscalingv2.HorizontalPodAutoscaler) bool { return h.Status.DesiredReplicas == 1 })
	setCPU("300m")
	waitHPA(ctx, t, cs, ns, name, "scaled out again", func(h *autoscalingv2.HorizontalPodAutoscaler) bool { return h.Status.DesiredReplicas > 1 })
	revert := time.Now()
	setCPU("20m")
	fctx, fcancel := context.WithDeadline(ctx, revert.Add(3*time.Minute))
	defer fcancel()
	rec := s.Finish(fctx, experiments.RecordingEnd{RevertedAt: revert})
	if rec.Incomplete || !rec.Recovered {
		t.Fatalf("recording: %s", rec.Reason)
	}

	subject := "hpa " + ns + "/" + name
	figs := figuresBySubject(rec)[subject]
	if figs == nil {
		t.Fatalf("no figures for %s: %+v", subject, rec.Figures)
	}
	for _, m := range []string{"replicasBefore", "timeToScaleOut", "peakReplicas", "timeToPeak", "hitMaxReplicas", "directionChanges", "scaleEvents", "timeToBaseline"} {
		if f := figs[m]; f.Value != nil {
			t.Logf("%s = %g %s (±%g) %s", m, *f.Value, f.Unit, f.Uncertainty, f.Note)
		}
	}
	for metric, want := range map[string]float64{"replicasBefore": 1, "peakReplicas": 3, "hitMaxReplicas": 1} {
		if v := figValue(t, figs, metric); v != want {
			t.Errorf("%s = %g, want %g", metric, v, want)
		}
	}
	if v := figValue(t, figs, "directionChanges"); v < 2 {
		t.Errorf("directionChanges = %g, want at least 2 (out, in, out, in) with a zero stabilization window", v)
	}
	if v := figValue(t, figs, "timeToScaleOut"); v <= 0 || v > time.Since(fault).Seconds() {
		t.Errorf("timeToScaleOut = %g", v)
	}
	if v := figValue(t, figs, "timeToBaseline"); v <= 0 || v > 180 {
		t.Errorf("timeToBaseline = %g", v)
	}
	for _, f := range rec.Figures {
		if f.Key != "autoscalers/"+f.Subject+"/"+f.Metric {
			t.Errorf("figure key %q does not follow autoscalers/<subject>/<metric>", f.Key)
		}
	}

	// Against the HPA itself: where it ended, and every rescale it announced.
	doc := rec.Data.(*recorder.AutoscalerDocument)
	var r *recorder.AutoscalerRecord
	for i := range doc.Autoscalers {
		if doc.Autoscalers[i].Subject == subject {
			r = &doc.Autoscalers[i]
		}
	}
	if r == nil {
		t.Fatalf("no record for %s", subject)
	}
	h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := r.Changes[len(r.Changes)-1]
	if last.Desired == nil || *last.Desired != float64(h.Status.DesiredReplicas) || last.Current != float64(h.Status.CurrentReplicas) {
		t.Errorf("last recorded change %+v, the HPA's status is current %d desired %d", last, h.Status.CurrentReplicas, h.Status.DesiredReplicas)
	}
	var desired []float64
	var lastDesiredAt time.Time
	for _, ch := range r.Changes {
		if ch.Desired != nil && (len(desired) == 0 || *ch.Desired != desired[len(desired)-1]) {
			desired = append(desired, *ch.Desired)
			lastDesiredAt = ch.At
		}
	}
	// status.lastScaleTime is the controller's own time of its last rescale (whole seconds).
	if lst := h.Status.LastScaleTime; lst == nil || lastDesiredAt.Sub(lst.Time).Abs() > 2*time.Second {
		t.Errorf("last desired change recorded at %s, the HPA's lastScaleTime is %v", lastDesiredAt.Format(time.RFC3339Nano), lst)
	}
	var rescales []float64
	for _, e := range r.Events {
		if e.Reason == "SuccessfulRescale" {
			m := newSizeRE.FindStringSubmatch(e.Message)
			if m == nil {
				t.Errorf("SuccessfulRescale without a new size: %q", e.Message)
				continue
			}
			n, _ := strconv.ParseFloat(m[1], 64)
			rescales = append(rescales, n)
		}
	}
	// Every announced size is a desired level the recorder saw, in the same order.
	if len(rescales) < 4 || !isSubsequence(rescales, desired[1:]) {
		t.Errorf("SuccessfulRescale sizes %v, recorded desired levels %v: want every rescale (at least 4) among them, in order", rescales, desired)
	}
	if !slices.ContainsFunc(r.Conditions, func(c recorder.ConditionChange) bool {
		return c.Type == "ScalingLimited" && c.Status == "True" && c.Reason == "TooManyReplicas"
	}) {
		t.Errorf("no ScalingLimited=True (TooManyReplicas) transition among %+v", r.Conditions)
	}
	tl := timelineOf(rec, subject)
	if tl == nil || tl.Resolution != "watch events, ≤100 ms" || len(tl.Series) != 2 || len(tl.Marks) == 0 {
		t.Errorf("timeline %+v: want current and desired series, marks, and the watch resolution", tl)
	}
}

func isSubsequence(sub, of []float64) bool {
	i := 0
	for _, v := range of {
		if i < len(sub) && sub[i] == v {
			i++
		}
	}
	return i == len(sub)
}

func timelineOf(rec experiments.Recording, subject string) *experiments.Timeline {
	for i := range rec.Timelines {
		if rec.Timelines[i].Subject == subject {
			return &rec.Timelines[i]
		}
	}
	return nil
}

// Named autoscalers: a ScaledObject is found through the HPA KEDA names after it; a name that does
// not exist is refused before anything is applied (the engine's refusal path: exit 4).
func TestAutoscalersNamed(t *testing.T) {
	c := cluster.Get(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const ns = "hpa-named"
	cs := c.Client
	createNamespace(ctx, t, cs, ns)
	createDeployment(ctx, t, cs, ns, "worker", 2, "")
	two := int32(2)
	keda := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "keda-hpa-worker", Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "worker"},
			MinReplicas:    &two, MaxReplicas: 4,
		},
	}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, keda, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc, err := kubeclient.FromConfig(c.Config, "")
	if err != nil {
		t.Fatal(err)
	}
	env := injectors.Env{Kube: kc}
	pause := []runbooks.Fault{{ProcessPause: &runbooks.ProcessPause{}}}

	x := &runbooks.Experiment{Name: "keda", Faults: pause, Record: &runbooks.Record{Autoscalers: []runbooks.AutoscalerSpec{{ScaledObject: ns + "/worker"}}}}
	s, err := (&recorder.Autoscalers{}).Start(ctx, x, env)
	if err != nil || s == nil {
		t.Fatalf("Start = %v, %v", s, err)
	}
	s.FaultApplied(experiments.AppliedFault{Kind: "processPause", At: time.Now()})
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	defer fcancel()
	rec := s.Finish(fctx, experiments.RecordingEnd{RevertedAt: time.Now()})
	if figs := figuresBySubject(rec)["hpa "+ns+"/keda-hpa-worker"]; figs == nil {
		t.Errorf("the ScaledObject's HPA is not recorded: %+v", rec.Figures)
	}

	missing := &runbooks.Runbook{Experiments: []runbooks.Experiment{{Name: "missing", Faults: pause,
		Record: &runbooks.Record{Autoscalers: []runbooks.AutoscalerSpec{{HPA: ns + "/nope"}}}}}}
	_, err = (&recorder.Autoscalers{}).Start(ctx, &missing.Experiments[0], env)
	if err == nil || !strings.Contains(err.Error(), "horizontalpodautoscaler "+ns+"/nope does not exist") {
		t.Errorf("Start with a missing HPA = %v, want it named as missing", err)
	}
	err = recorder.AutoscalersPreflight(kc)(ctx, missing)
	var refused *policy.RefusedError
	if !errors.As(err, &refused) || refused.Rule != "record.autoscalers" || !strings.Contains(err.Error(), ns+"/nope") {
		t.Errorf("preflight = %v, want a refusal by record.autoscalers naming the HPA", err)
	}
	// Through the engine: refused (exit 4) and no pod of the workload was touched.
	rb, err := runbooks.Parse("named.yaml", []byte(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: named}
environment: {name: test, type: local, kubernetes: {server: "`+c.Server+`"}}
experiments:
  - name: kill-one
    duration: 1s
    faults:
      - podKill: {namespaces: [`+ns+`], labelSelector: app=worker, mode: one}
    record:
      autoscalers:
        - hpa: `+ns+`/nope
`))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := injectors.NewRegistry(kubeinj.PodKill{})
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.OpenFile(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	eng := &experiments.Engine{
		Injectors: reg, Probes: guardrail.DefaultProbes(), InjectorEnv: env, Ledger: led, Logger: slog.New(slog.DiscardHandler),
		Preflight: []experiments.Preflight{recorder.AutoscalersPreflight(kc)},
		Recorders: []experiments.Recorder{&recorder.Autoscalers{}},
	}
	before, err := cs.CoreV1().Pods(ns).List(ctx, metav1ListApp("worker"))
	if err != nil {
		t.Fatal(err)
	}
	res := eng.Run(ctx, rb, experiments.RunOptions{})
	if res.Verdict != experiments.Refused || res.ExitCode != 4 || !strings.Contains(res.Reason, ns+"/nope does not exist") {
		t.Errorf("run: verdict %s, exit %d, reason %q; want refused (exit 4) naming the HPA", res.Verdict, res.ExitCode, res.Reason)
	}
	after, err := cs.CoreV1().Pods(ns).List(ctx, metav1ListApp("worker"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range before.Items {
		if i >= len(after.Items) || after.Items[i].UID != before.Items[i].UID || after.Items[i].DeletionTimestamp != nil {
			t.Errorf("a pod was touched although the run was refused")
			break
		}
	}

	missingSO := &runbooks.Runbook{Experiments: []runbooks.Experiment{{Name: "missing-so", Faults: pause,
		Record: &runbooks.Record{Autoscalers: []runbooks.AutoscalerSpec{{ScaledObject: ns + "/gone"}}}}}}
	if err := recorder.AutoscalersPreflight(kc)(ctx, missingSO); err == nil || !strings.Contains(err.Error(), "keda-hpa-gone") || !strings.Contains(err.Error(), "ScaledObject") {
		t.Errorf("preflight with a missing ScaledObject = %v, want the HPA name KEDA would use", err)
	}
}
