package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// helmBinary is $FAULTLINE_HELM (scripts/testenv-helm builds it) or helm on the PATH.
func helmBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FAULTLINE_HELM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("helm is missing; scripts/testenv builds it (scripts/testenv-helm) and exports FAULTLINE_HELM")
	}
	t.Skip("helm is missing: run scripts/testenv-helm and set FAULTLINE_HELM to the path it prints")
	return ""
}

func needKubectl(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kubectl is not installed; scripts/testenv installs it")
		}
		t.Skip("kubectl is not installed (scripts/testenv installs it)")
	}
}

// render runs a command that prints manifests and decodes them.
func render(t testing.TB, name string, args ...string) ([]byte, map[string]*unstructured.Unstructured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, stderr.String())
	}
	return out.Bytes(), decodeObjects(t, out.Bytes())
}

// decodeObjects keys each object by kind/namespace/name.
func decodeObjects(t testing.TB, manifests []byte) map[string]*unstructured.Unstructured {
	t.Helper()
	objs := map[string]*unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode manifests: %v", err)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		objs[u.GetKind()+"/"+u.GetNamespace()+"/"+u.GetName()] = u
	}
	return objs
}

func convert[T any](t testing.TB, u *unstructured.Unstructured) *T {
	t.Helper()
	if u == nil {
		t.Fatal("object missing")
	}
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &v); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return &v
}

// The Helm chart renders what the kustomize base does, and the real API server accepts it.
//
// Differences that are allowed, and why:
//   - the kustomize base creates the Namespace; a chart leaves its release namespace to
//     `helm install --create-namespace`, as Helm's own docs advise;
//   - labels and selectors: the chart adds app.kubernetes.io/instance (so that two releases do
//     not select each other's pods) and its chart and managed-by labels.
//
// Everything else that decides what runs is compared: the set of objects, the Deployment's
// replicas, strategy, container args, env, ports, probes, security context, volumes and mounts,
// the RBAC rules and bindings, the Service's ports, the daemon config and the ServiceMonitor.
func TestDeployHelmChartMatchesKustomize(t *testing.T) {
	helm := helmBinary(t)
	needKubectl(t)
	chart := filepath.Join("..", "..", "deploy", "helm", "faultline")
	kust := filepath.Join("..", "..", "deploy", "kustomize")
	const ns = "faultline"

	_, kobjs := render(t, "kubectl", "kustomize", filepath.Join(kust, "base"))
	_, hobjs := render(t, helm, "template", "faultline", chart, "--namespace", ns)

	delete(kobjs, "Namespace//"+ns)
	for key := range kobjs {
		if hobjs[key] == nil {
			t.Errorf("the chart does not render %s, which the kustomize base has", key)
		}
	}
	for key := range hobjs {
		if kobjs[key] == nil {
			t.Errorf("the chart renders %s, which the kustomize base does not have", key)
		}
	}

	// The kustomize base leaves the namespace to its kustomization's namespace field; compare
	// namespaced objects with it set.
	kd := convert[appsv1.Deployment](t, kobjs["Deployment/"+ns+"/faultline"])
	hd := convert[appsv1.Deployment](t, hobjs["Deployment/"+ns+"/faultline"])
	if *hd.Spec.Replicas != 2 || *hd.Spec.Replicas != *kd.Spec.Replicas {
		t.Errorf("replicas: chart %d, kustomize %d, want 2", *hd.Spec.Replicas, *kd.Spec.Replicas)
	}
	same(t, "Deployment strategy", hd.Spec.Strategy, kd.Spec.Strategy)
	hp, kp := hd.Spec.Template.Spec, kd.Spec.Template.Spec
	for k, v := range kd.Spec.Selector.MatchLabels {
		if hd.Spec.Selector.MatchLabels[k] != v || hp.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector.MatchLabels[k] != v {
			t.Errorf("the chart's selectors lack the kustomize base's %s=%s", k, v)
		}
	}
	same(t, "serviceAccountName", hp.ServiceAccountName, kp.ServiceAccountName)
	same(t, "terminationGracePeriodSeconds", hp.TerminationGracePeriodSeconds, kp.TerminationGracePeriodSeconds)
	same(t, "volumes", hp.Volumes, kp.Volumes)
	if len(hp.Containers) != 1 || len(kp.Containers) != 1 {
		t.Fatalf("containers: chart %d, kustomize %d, want 1", len(hp.Containers), len(kp.Containers))
	}
	hc, kc := hp.Containers[0], kp.Containers[0]
	same(t, "image", hc.Image, kc.Image)
	same(t, "container args", hc.Args, kc.Args)
	same(t, "env", hc.Env, kc.Env)
	same(t, "ports", hc.Ports, kc.Ports)
	same(t, "volumeMounts", hc.VolumeMounts, kc.VolumeMounts)
	same(t, "readinessProbe", hc.ReadinessProbe, kc.ReadinessProbe)
	same(t, "livenessProbe", hc.LivenessProbe, kc.LivenessProbe)
	same(t, "resources", hc.Resources, kc.Resources)
	same(t, "securityContext", hc.SecurityContext, kc.SecurityContext)

	same(t, "Role rules", convert[rbacv1.Role](t, hobjs["Role/"+ns+"/faultline-daemon"]).Rules, convert[rbacv1.Role](t, kobjs["Role/"+ns+"/faultline-daemon"]).Rules)
	same(t, "ClusterRole rules", convert[rbacv1.ClusterRole](t, hobjs["ClusterRole//faultline"]).Rules, convert[rbacv1.ClusterRole](t, kobjs["ClusterRole//faultline"]).Rules)
	hrb, krb := convert[rbacv1.RoleBinding](t, hobjs["RoleBinding/"+ns+"/faultline-daemon"]), convert[rbacv1.RoleBinding](t, kobjs["RoleBinding/"+ns+"/faultline-daemon"])
	same(t, "RoleBinding roleRef", hrb.RoleRef, krb.RoleRef)
	same(t, "RoleBinding subjects", hrb.Subjects, krb.Subjects)
	hcrb, kcrb := convert[rbacv1.ClusterRoleBinding](t, hobjs["ClusterRoleBinding//faultline"]), convert[rbacv1.ClusterRoleBinding](t, kobjs["ClusterRoleBinding//faultline"])
	same(t, "ClusterRoleBinding roleRef", hcrb.RoleRef, kcrb.RoleRef)
	same(t, "ClusterRoleBinding subjects", hcrb.Subjects, kcrb.Subjects)
	same(t, "Service ports", convert[corev1.Service](t, hobjs["Service/"+ns+"/faultline"]).Spec.Ports, convert[corev1.Service](t, kobjs["Service/"+ns+"/faultline"]).Spec.Ports)
	same(t, "daemon config", daemonConfigOf(t, hobjs["ConfigMap/"+ns+"/faultline-config"]), daemonConfigOf(t, kobjs["ConfigMap/"+ns+"/faultline-config"]))

	// The ServiceMonitor: the chart's when enabled, the kustomize component's in an overlay.
	overlay := t.TempDir()
	abs, _ := filepath.Abs(kust)
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: ["+relPath(t, overlay, filepath.Join(abs, "base"))+"]\ncomponents: ["+relPath(t, overlay, filepath.Join(abs, "components", "servicemonitor"))+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, kmon := render(t, "kubectl", "kustomize", overlay)
	_, hmon := render(t, helm, "template", "faultline", chart, "--namespace", ns, "--set", "serviceMonitor.enabled=true")
	hsm, ksm := hmon["ServiceMonitor/"+ns+"/faultline"], kmon["ServiceMonitor/"+ns+"/faultline"]
	if hsm == nil || ksm == nil {
		t.Fatalf("ServiceMonitor: chart %v, kustomize %v", hsm != nil, ksm != nil)
	}
	he, _, _ := unstructured.NestedSlice(hsm.Object, "spec", "endpoints")
	ke, _, _ := unstructured.NestedSlice(ksm.Object, "spec", "endpoints")
	same(t, "ServiceMonitor endpoints", he, ke)

	// The real API server accepts every object the chart renders (server-side dry run: defaults,
	// validation and admission run, nothing is stored), in a namespace of this test's own: the
	// shared cluster's "faultline" may be going away after the kustomize test.
	c := kubeCluster.Get(t)
	ctx := context.Background()
	dryNS := fmt.Sprintf("faultline-helm-%d", time.Now().UnixNano()%1e6)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: dryNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), dryNS, metav1.DeleteOptions{}) })
	helmOut, _ := render(t, helm, "template", "faultline", chart, "--namespace", dryNS)
	dryRun(t, c.Kubeconfig, helmOut)
	// And with every option on: runbooks from values, a PostgreSQL DSN Secret, own Secret names.
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`runbooks:
  pod-kill.yaml:
    apiVersion: faultline.dev/v1alpha1
    kind: Runbook
    metadata: {name: pod-kill}
tokens: {secretName: api-tokens}
tls: {secretName: api-cert}
postgres: {dsnSecret: {name: history-db, key: dsn}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	fullOut, full := render(t, helm, "template", "faultline", chart, "--namespace", dryNS, "-f", values)
	dryRun(t, c.Kubeconfig, fullOut)
	fd := convert[appsv1.Deployment](t, full["Deployment/"+dryNS+"/faultline"])
	vols := map[string]corev1.Volume{}
	for _, v := range fd.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	if vols["postgres"].Secret == nil || vols["postgres"].Secret.SecretName != "history-db" || vols["tokens"].Secret.SecretName != "api-tokens" || vols["tls"].Secret.SecretName != "api-cert" {
		t.Errorf("volumes with every option on: %+v", vols)
	}
	for _, m := range fd.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.SubPath != "" {
			t.Errorf("volume %s is mounted with subPath: the kubelet never updates such a file, and the daemon would not reload it", m.Name)
		}
	}
	rb := full["ConfigMap/"+dryNS+"/faultline-runbooks"]
	if rb == nil {
		t.Fatal("no runbooks ConfigMap rendered from values")
	}
	data, _, _ := unstructured.NestedStringMap(rb.Object, "data")
	if !strings.Contains(data["pod-kill.yaml"], "kind: Runbook") {
		t.Errorf("runbooks ConfigMap data: %v", data)
	}
}

// The values schema refuses what the daemon could not run, before anything reaches the cluster.
func TestDeployHelmValuesSchemaRefusesBadValues(t *testing.T) {
	helm := helmBinary(t)
	chart := filepath.Join("..", "..", "deploy", "helm", "faultline")
	for _, set := range []string{"replicaCount=0", "config.kind=Runbook", "serviceMonitor.interval=often", "image.tag=", "tokenz.secretName=x"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, helm, "template", "faultline", chart, "--set", set).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "schema") {
			t.Errorf("helm template --set %s: %v, want a schema error\n%s", set, err, out)
		}
	}
	if out, err := exec.Command(helm, "lint", chart).CombinedOutput(); err != nil {
		t.Errorf("helm lint: %v\n%s", err, out)
	}
}

func same(t testing.TB, what string, chart, kustomize any) {
	t.Helper()
	if !reflect.DeepEqual(chart, kustomize) {
		a, _ := yaml.Marshal(chart)
		b, _ := yaml.Marshal(kustomize)
		t.Errorf("%s differ\nchart:\n%s\nkustomize:\n%s", what, a, b)
	}
}

// daemonConfigOf decodes the daemon config a ConfigMap holds, as data, so that formatting and
// comments do not count.
func daemonConfigOf(t testing.TB, cm *unstructured.Unstructured) map[string]any {
	t.Helper()
	if cm == nil {
		t.Fatal("no config ConfigMap")
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	var v map[string]any
	if err := yaml.Unmarshal([]byte(data["faultline.yaml"]), &v); err != nil {
		t.Fatalf("faultline.yaml in %s: %v", cm.GetName(), err)
	}
	return v
}

func dryRun(t testing.TB, kubeconfig string, manifests []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-f", "-")
	cmd.Stdin = bytes.NewReader(manifests)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply --dry-run=server of the chart: %v\n%s", err, out)
	}
}
