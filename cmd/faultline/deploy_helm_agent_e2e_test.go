package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// With agent.enabled the chart renders the kustomize agent component's DaemonSet and
// ServiceAccount, and the real API server accepts them.
//
// Differences that are allowed, and why:
//   - the component labels the faultline Namespace for the privileged Pod Security level; the
//     chart owns no namespace (uninstalling a chart-owned one would delete the daemon's ledger
//     ConfigMaps with it), so it refuses to install into a namespace that enforces a lower level
//     and its docs say how to label one;
//   - labels and selectors add the release and the chart's labels (the name label, by which runs
//     find the agents, is the same);
//   - the container names its imagePullPolicy (the chart's image.pullPolicy), as the daemon's does.
//
// Everything else is compared whole: the DaemonSet's spec and the ServiceAccount.
func TestDeployHelmAgentMatchesKustomize(t *testing.T) {
	helm := helmBinary(t)
	needKubectl(t)
	chart := filepath.Join("..", "..", "deploy", "helm", "faultline")
	kust, err := filepath.Abs(filepath.Join("..", "..", "deploy", "kustomize"))
	if err != nil {
		t.Fatal(err)
	}
	const ns = "faultline"

	// The overlay of docs/agent.md. Its namespace field puts the component's objects where runs
	// look for agents (the base's namespace field reaches only the base's own objects); kustomize
	// takes relative paths only.
	overlay := t.TempDir()
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: " + ns +
		"\nresources: [" + relPath(t, overlay, filepath.Join(kust, "base")) + "]\ncomponents: [" + relPath(t, overlay, filepath.Join(kust, "components", "agent")) + "]\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	_, kbase := render(t, "kubectl", "kustomize", filepath.Join(kust, "base"))
	_, kobjs := render(t, "kubectl", "kustomize", overlay)
	_, hbase := render(t, helm, "template", "faultline", chart, "--namespace", ns)
	_, hobjs := render(t, helm, "template", "faultline", chart, "--namespace", ns, "--set", "agent.enabled=true")

	// The agent's objects are what each adds to its daemon-only render; off by default.
	kadd, hadd := added(kbase, kobjs), added(hbase, hobjs)
	want := []string{"DaemonSet/" + ns + "/faultline-agent", "ServiceAccount/" + ns + "/faultline-agent"}
	same(t, "the component's objects", kadd, want)
	same(t, "the chart's agent objects", hadd, want)
	for key, o := range hbase {
		if o.GetLabels()["app.kubernetes.io/name"] == "faultline-agent" || strings.Contains(key, "agent") {
			t.Errorf("agent.enabled is false by default, but the chart renders %s", key)
		}
	}

	kd := convert[appsv1.DaemonSet](t, kobjs[want[0]])
	hd := convert[appsv1.DaemonSet](t, hobjs[want[0]])
	hasLabels(t, "DaemonSet labels", hd.Labels, kd.Labels)
	hasLabels(t, "DaemonSet selector", hd.Spec.Selector.MatchLabels, kd.Spec.Selector.MatchLabels)
	hasLabels(t, "pod labels", hd.Spec.Template.Labels, kd.Spec.Template.Labels)
	if hd.Spec.Template.Labels["app.kubernetes.io/name"] != "faultline-agent" {
		t.Errorf("pod labels %v: runs find the agents by app.kubernetes.io/name=faultline-agent", hd.Spec.Template.Labels)
	}
	hd.Spec.Selector.MatchLabels, hd.Spec.Template.Labels = kd.Spec.Selector.MatchLabels, kd.Spec.Template.Labels
	if len(hd.Spec.Template.Spec.Containers) != 1 || hd.Spec.Template.Spec.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent {
		t.Fatalf("the chart's agent containers %+v: want one with the chart's pull policy IfNotPresent", hd.Spec.Template.Spec.Containers)
	}
	hd.Spec.Template.Spec.Containers[0].ImagePullPolicy = ""
	same(t, "DaemonSet spec", hd.Spec, kd.Spec)

	ksa := convert[corev1.ServiceAccount](t, kobjs[want[1]])
	hsa := convert[corev1.ServiceAccount](t, hobjs[want[1]])
	hasLabels(t, "ServiceAccount labels", hsa.Labels, ksa.Labels)
	same(t, "ServiceAccount automountServiceAccountToken", hsa.AutomountServiceAccountToken, ksa.AutomountServiceAccountToken)
	hsa.ObjectMeta.Labels, ksa.ObjectMeta.Labels = nil, nil
	same(t, "ServiceAccount", hsa, ksa)

	// Every value reaches the object: a CRI-O node's socket, another Secret, image, extra args,
	// node selector, tolerations, resources.
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`agent:
  enabled: true
  image: {repository: registry.example/faultline, tag: v9, pullPolicy: Always}
  criSocket: /var/run/crio/crio.sock
  tls: {secretName: agent-cert}
  extraArgs: [--no-proc-fallback]
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]
  resources: {limits: {memory: 128Mi}}
  podAnnotations: {team: sre}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, vobjs := render(t, helm, "template", "faultline", chart, "--namespace", ns, "-f", values)
	vd := convert[appsv1.DaemonSet](t, vobjs[want[0]])
	vp := vd.Spec.Template.Spec
	vc := vp.Containers[0]
	if vc.Image != "registry.example/faultline:v9" || vc.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s %s", vc.Image, vc.ImagePullPolicy)
	}
	if !slices.Contains(vc.Args, "--cri-socket=/host/var/run/crio/crio.sock") || vc.Args[len(vc.Args)-1] != "--no-proc-fallback" {
		t.Errorf("args %v: want the CRI-O socket and the extra argument last", vc.Args)
	}
	mounts, vols := map[string]string{}, map[string]corev1.Volume{}
	for _, m := range vc.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range vp.Volumes {
		vols[v.Name] = v
	}
	if mounts["containerd"] != "/host/var/run/crio/crio.sock" || vols["containerd"].HostPath == nil || vols["containerd"].HostPath.Path != "/var/run/crio/crio.sock" {
		t.Errorf("runtime socket: mount %q, volume %+v", mounts["containerd"], vols["containerd"].HostPath)
	}
	if vols["tls"].Secret == nil || vols["tls"].Secret.SecretName != "agent-cert" {
		t.Errorf("tls volume %+v", vols["tls"])
	}
	if vp.NodeSelector["kubernetes.io/os"] != "linux" || len(vp.Tolerations) != 1 || vp.Tolerations[0].Key != "dedicated" ||
		vc.Resources.Limits.Memory().String() != "128Mi" || vd.Spec.Template.Annotations["team"] != "sre" {
		t.Errorf("nodeSelector %v, tolerations %+v, resources %+v, annotations %v", vp.NodeSelector, vp.Tolerations, vc.Resources, vd.Spec.Template.Annotations)
	}

	helmAgentOnServer(t, helm, chart)
}

// helmAgentOnServer: in a namespace labelled as the docs say, the real API server accepts the
// agent's objects and its pods; in one that enforces the baseline level it would refuse the pods,
// and the chart refuses to install there (its lookup of the namespace runs against the cluster).
func helmAgentOnServer(t *testing.T, helm, chart string) {
	c := kubeCluster.Get(t)
	ctx := context.Background()
	suffix := time.Now().UnixNano() % 1e6
	namespace := func(level string) string {
		name := fmt.Sprintf("faultline-agent-%s-%d", level, suffix)
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pod-security.kubernetes.io/enforce": level}}}
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		return name
	}
	// A pod is admitted only with its ServiceAccount in place; created after helm's render, which
	// refuses to take over an object that no release owns.
	dryRunPod := func(ns string, pod *corev1.Pod) error {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: pod.Spec.ServiceAccountName}}
		if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	helmServer := func(ns string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var out, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, helm, "template", "faultline", chart, "--namespace", ns, "--set", "agent.enabled=true",
			"--dry-run=server", "--kubeconfig", c.Kubeconfig)
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%w: %s", err, stderr.String())
		}
		return out.Bytes(), nil
	}
	agentPod := func(objs map[string]*unstructured.Unstructured, ns string) *corev1.Pod {
		ds := convert[appsv1.DaemonSet](t, objs["DaemonSet/"+ns+"/faultline-agent"])
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "faultline-agent-dry", Labels: ds.Spec.Template.Labels}, Spec: ds.Spec.Template.Spec}
	}

	priv := namespace("privileged")
	out, err := helmServer(priv)
	if err != nil {
		t.Fatalf("helm template --dry-run=server into a privileged namespace: %v", err)
	}
	dryRun(t, c.Kubeconfig, out)
	pod := agentPod(decodeObjects(t, out), priv)
	if err := dryRunPod(priv, pod); err != nil {
		t.Errorf("the agent's pod in a namespace labelled privileged: %v", err)
	}

	base := namespace("baseline")
	if _, err := helmServer(base); err == nil || !strings.Contains(err.Error(), "pod-security.kubernetes.io/enforce=privileged") {
		t.Errorf("helm template --dry-run=server into a namespace enforcing baseline: %v, want a refusal that says how to label it", err)
	}
	if err := dryRunPod(base, pod); err == nil || !strings.Contains(err.Error(), "baseline") {
		t.Errorf("the agent's pod in a namespace enforcing baseline: %v, want Pod Security's refusal", err)
	}
}

// The values schema refuses a mistyped or impossible agent value, and takes docs/agent.md's.
func TestDeployHelmAgentSchemaRefusesBadValues(t *testing.T) {
	helm := helmBinary(t)
	chart := filepath.Join("..", "..", "deploy", "helm", "faultline")
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "agent.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml helm\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/agent.md has no ```yaml helm block of agent values")
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, m[1], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, objs := render(t, helm, "template", "faultline", chart, "-f", values); objs["DaemonSet/default/faultline-agent"] == nil {
		t.Errorf("docs/agent.md's values render no agent DaemonSet")
	}
	for _, set := range []string{
		"agent.enabeld=true",
		"agent.enabled=yes",
		"agent.criSocket=run/containerd/containerd.sock",
		"agent.tls.secretName=",
		"agent.tls.secret=x",
		"agent.image.pullPolicy=Sometimes",
		"agent.extraArgs={no-proc-fallback}",
		"agent.tolerations=all",
		"agent.nodeSelector.zone=1",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, helm, "template", "faultline", chart, "--set", set).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "schema") {
			t.Errorf("helm template --set %s: %v, want a schema error\n%s", set, err, out)
		}
	}
}

// added lists the keys of after that before lacks.
func added(before, after map[string]*unstructured.Unstructured) []string {
	var keys []string
	for key := range after {
		if before[key] == nil {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}

func hasLabels(t testing.TB, what string, chart, kustomize map[string]string) {
	t.Helper()
	for k, v := range kustomize {
		if chart[k] != v {
			t.Errorf("%s %v lack the kustomize component's %s=%s", what, chart, k, v)
		}
	}
}
