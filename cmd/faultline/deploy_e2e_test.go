package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/faultline-dev/faultline/internal/daemon"
)

// kubectl runs the real kubectl against the test cluster.
func kubectl(t testing.TB, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The documented deploy applies as documented: `kubectl apply -k deploy/kustomize/base` on a plain
// cluster (no Prometheus Operator), then a server-side dry run of the same; the objects are what
// the daemon needs (tokens and certificate mounted without subPath, TLS on, probes over HTTPS,
// watch on ConfigMaps for halts through a standby). The ServiceMonitor is an optional component.
func TestDeployKustomizeBaseApplies(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kubectl is not installed; scripts/testenv installs it")
		}
		t.Skip("kubectl is not installed (scripts/testenv installs it)")
	}
	c := kubeCluster.Get(t)
	base := filepath.Join("..", "..", "deploy", "kustomize", "base")
	if out, err := kubectl(t, c.Kubeconfig, "apply", "-k", base); err != nil {
		t.Fatalf("kubectl apply -k %s: %v\n%s", base, err, out)
	}
	t.Cleanup(func() { _, _ = kubectl(t, c.Kubeconfig, "delete", "-k", base, "--wait=false") })
	if out, err := kubectl(t, c.Kubeconfig, "apply", "-k", base, "--dry-run=server"); err != nil {
		t.Fatalf("kubectl apply -k %s --dry-run=server: %v\n%s", base, err, out)
	}

	ctx := context.Background()
	dep, err := c.Client.AppsV1().Deployments("faultline").Get(ctx, "faultline", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", dep.Spec.Replicas)
	}
	pod := dep.Spec.Template.Spec
	ctr := pod.Containers[0]
	mounts := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		if m.SubPath != "" {
			t.Errorf("volume %s is mounted with subPath %q: the kubelet never updates such a file", m.Name, m.SubPath)
		}
		mounts[m.Name] = m.MountPath
	}
	secrets := map[string]string{}
	var configMap string
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
		}
		if v.Name == "config" && v.ConfigMap != nil {
			configMap = v.ConfigMap.Name
		}
	}
	if secrets["tls"] != "faultline-tls" || secrets["tokens"] != "faultline-tokens" {
		t.Errorf("secret volumes %v, want tls from faultline-tls and tokens from faultline-tokens", secrets)
	}
	for _, p := range []*corev1.Probe{ctr.ReadinessProbe, ctr.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("probe %+v, want HTTPS", p)
		}
	}

	// The daemon config in the generated ConfigMap: TLS on, files where the volumes are mounted.
	cm, err := c.Client.CoreV1().ConfigMaps("faultline").Get(ctx, configMap, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the config ConfigMap %q: %v", configMap, err)
	}
	var cfg daemon.Config
	if err := yaml.Unmarshal([]byte(cm.Data["faultline.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.API.CertFile == "" || !strings.HasPrefix(cfg.API.CertFile, mounts["tls"]+"/") || !strings.HasPrefix(cfg.API.KeyFile, mounts["tls"]+"/") {
		t.Errorf("api.certFile %q, keyFile %q: want TLS from the tls volume at %s", cfg.API.CertFile, cfg.API.KeyFile, mounts["tls"])
	}
	if !strings.HasPrefix(cfg.API.TokensFile, mounts["tokens"]+"/") {
		t.Errorf("api.tokensFile %q is not in the tokens volume at %s", cfg.API.TokensFile, mounts["tokens"])
	}
	if cfg.Ledger.Backend != "kubernetes" || cfg.LeaderElection == nil || cfg.Ledger.Retention == 0 {
		t.Errorf("ledger %+v, leaderElection %+v: want the kubernetes ledger with a retention and leader election", cfg.Ledger, cfg.LeaderElection)
	}
	if !strings.HasSuffix(ctr.Args[2], filepath.Base(mounts["config"])+"/faultline.yaml") {
		t.Errorf("args %v do not name the config in %s", ctr.Args, mounts["config"])
	}

	role, err := c.Client.RbacV1().Roles("faultline").Get(ctx, "faultline-daemon", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	watch := false
	for _, r := range role.Rules {
		if strings.Join(r.Resources, ",") == "configmaps" && strings.Contains(strings.Join(r.Verbs, ","), "watch") {
			watch = true
		}
	}
	if !watch {
		t.Errorf("the Role does not let the daemon watch ConfigMaps (halts through a standby): %+v", role.Rules)
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Get(ctx, "faultline", metav1.GetOptions{}); err != nil {
		t.Errorf("the fault-injection ClusterRole: %v", err)
	}
	waitFor(t, 60*time.Second, "the Deployment's two pods", func() bool {
		pods, err := c.Client.CoreV1().Pods("faultline").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=faultline"})
		return err == nil && len(pods.Items) == 2
	})

	// The ServiceMonitor is a component an overlay adds; it builds (client side) with the base.
	overlay := t.TempDir()
	abs, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "kustomize"))
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: ["+relPath(t, overlay, filepath.Join(abs, "base"))+"]\ncomponents: ["+relPath(t, overlay, filepath.Join(abs, "components", "servicemonitor"))+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "kustomize", overlay).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "kind: ServiceMonitor") || !strings.Contains(string(out), "scheme: https") {
		t.Fatalf("kubectl kustomize with the servicemonitor component: %v\n%s", err, out)
	}
}

func relPath(t testing.TB, from, to string) string {
	t.Helper()
	r, err := filepath.Rel(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
