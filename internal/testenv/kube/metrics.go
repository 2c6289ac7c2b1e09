package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// The resource metrics pipeline the HPA controller reads: kwok serves kubelet-style
// /metrics/resource for its nodes from ClusterResourceUsage objects, metrics-server scrapes it
// and serves metrics.k8s.io through the apiserver's aggregation layer.

// MetricsResolution is metrics-server's scrape interval in the test cluster (it cannot go lower).
const MetricsResolution = "10s"

// WithMetricsServer also starts metrics-server and lets kwok report pod CPU, so that the real HPA
// controller scales; set the CPU with SetPodCPU. Needs bin/metrics-server and kwok's metrics files
// from scripts/testenv-kube.
func WithMetricsServer() Option { return func(o *options) { o.metricsServer = true } }

func metricsFiles(binDir string) (metrics, crds string) {
	root := filepath.Dir(filepath.Clean(binDir))
	return filepath.Join(root, "kwok-metrics.yaml"), filepath.Join(root, "kwok-crds.yaml")
}

func missingMetricsParts(binDir string) []string {
	var missing []string
	if st, err := os.Stat(filepath.Join(binDir, "metrics-server")); err != nil || st.Mode().Perm()&0o111 == 0 {
		missing = append(missing, "metrics-server")
	}
	m, c := metricsFiles(binDir)
	for _, f := range []string{m, c} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, "../"+filepath.Base(f))
		}
	}
	return missing
}

var (
	crdResource   = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	apiServices   = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	usageResource = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "clusterresourceusages"}
)

// installKwokCRDs creates kwok's usage CRDs (kwok only watches them) and waits until they serve.
func (c *Cluster) installKwokCRDs(ctx context.Context, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return fmt.Errorf("parse %s: %w", file, err)
		}
		if _, err := dyn.Resource(crdResource).Create(ctx, &u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", u.GetName(), err)
		}
	}
	return poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		_, err := dyn.Resource(usageResource).List(ctx, metav1.ListOptions{Limit: 1})
		return err
	})
}

// startMetricsServer runs metrics-server against kwok's nodes and registers it as
// v1beta1.metrics.k8s.io, then waits until the apiserver serves the API.
func (c *Cluster) startMetricsServer(ctx context.Context, binDir string) error {
	ports, err := c.run(ctx, component{
		name: "metrics-server", bin: filepath.Join(binDir, "metrics-server"), ports: 1,
		args: func(p []int, _ int) []string {
			return []string{
				"--kubeconfig", c.Kubeconfig,
				"--authentication-kubeconfig", c.Kubeconfig, "--authorization-kubeconfig", c.Kubeconfig,
				"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(p[0]),
				"--cert-dir", filepath.Join(c.Dir, "metrics-server-certs"),
				"--kubelet-use-node-status-port", "--kubelet-insecure-tls",
				"--kubelet-preferred-address-types", "InternalIP",
				"--metric-resolution", MetricsResolution, "--kubelet-request-timeout", "5s",
			}
		},
		ready: func(ctx context.Context, p []int) error {
			_, err := newHealthClient().getInsecure(ctx, fmt.Sprintf("https://127.0.0.1:%d/livez", p[0]))
			return err
		},
	})
	if err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-server", Namespace: "kube-system"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "127.0.0.1"},
	}
	if _, err := c.Client.CoreV1().Services("kube-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create metrics-server service: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	as := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1beta1.metrics.k8s.io"},
		"spec": map[string]any{
			"group": "metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": true,
			"groupPriorityMinimum": int64(100), "versionPriority": int64(100),
			"service": map[string]any{"name": "metrics-server", "namespace": "kube-system", "port": int64(ports[0])},
		},
	}}
	if _, err := dyn.Resource(apiServices).Create(ctx, as, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("register metrics.k8s.io: %w", err)
	}
	return poll(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		return c.Client.CoreV1().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1").Do(ctx).Error()
	})
}

// SetPodCPU makes kwok report cpu (e.g. "200m") for every container of every pod of namespace
// ns, now and for pods created later; the HPA sees it after metrics-server's next scrape.
func (c *Cluster) SetPodCPU(ctx context.Context, ns, cpu string) error {
	if !c.metrics {
		return errors.New("SetPodCPU needs the cluster started WithMetricsServer")
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	name := "cpu-" + ns
	spec := map[string]any{
		"selector": map[string]any{"matchNamespaces": []any{ns}},
		"usages":   []any{map[string]any{"usage": map[string]any{"cpu": map[string]any{"value": cpu}, "memory": map[string]any{"value": "16Mi"}}}},
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterResourceUsage",
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	_, err = dyn.Resource(usageResource).Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		patch := fmt.Sprintf(`{"spec":{"usages":[{"usage":{"cpu":{"value":%q},"memory":{"value":"16Mi"}}}]}}`, cpu)
		_, err = dyn.Resource(usageResource).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	}
	if err != nil {
		return fmt.Errorf("set pod cpu in %s to %s: %w", ns, cpu, err)
	}
	return nil
}

// metricsNodeAnnotations point metrics-server at kwok's per-node resource metrics.
func metricsNodeAnnotations(node string) map[string]string {
	return map[string]string{"metrics.k8s.io/resource-metrics-path": "/metrics/nodes/" + node + "/metrics/resource"}
}

// kwokMetricsArgs are kwok's extra flags for resource metrics.
func kwokMetricsArgs(metricsFile string) []string {
	return []string{"--config", metricsFile, "--enable-crds=" + strings.Join([]string{"ClusterResourceUsage"}, ",")}
}
