package kube_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/faultline-dev/faultline/internal/testenv/kube"
)

const readerToken = "reader-token-for-rbac-tests"

func TestCluster(t *testing.T) {
	c := kube.Start(t, kube.WithTokens(kube.Token{User: "faultline-reader", Token: readerToken}))

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	began := time.Now()
	if err := c.AddNodes(ctx, 1, "kwok-node"); err != nil {
		t.Fatal(err)
	}
	t.Logf("kwok node Ready in %s", time.Since(began).Round(time.Millisecond))

	t.Run("admin kubeconfig file", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			t.Fatalf("load %s: %v", c.Kubeconfig, err)
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		v, err := client.Discovery().ServerVersion()
		if err != nil {
			t.Fatalf("server version: %v", err)
		}
		if v.GitVersion != kube.KubeVersion {
			t.Errorf("server gitVersion = %q, want %q", v.GitVersion, kube.KubeVersion)
		}
		if cfg.Host != c.Server {
			t.Errorf("kubeconfig server = %q, want %q", cfg.Host, c.Server)
		}
	})

	t.Run("deployment replaces deleted pods", func(t *testing.T) {
		ns := createNamespace(ctx, t, c, "deploy")
		labels := map[string]string{"app": "web"}
		deploy := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr(int32(5)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: podTemplate(labels),
			},
		}
		began := time.Now()
		if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var pods []corev1.Pod
		waitFor(ctx, t, "5 ready pods and 5 available replicas", func(ctx context.Context) (string, bool, error) {
			var state string
			pods, state = readyPods(ctx, t, c, ns, "app=web")
			d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return "", false, err
			}
			state += fmt.Sprintf("; deployment available %d", d.Status.AvailableReplicas)
			return state, len(pods) == 5 && d.Status.AvailableReplicas == 5, nil
		})
		t.Logf("deployment of 5 available in %s", time.Since(began).Round(time.Millisecond))

		began = time.Now()
		deleted := map[types.UID]string{}
		for _, p := range pods[:2] {
			if err := c.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatalf("delete pod %s: %v", p.Name, err)
			}
			deleted[p.UID] = p.Name
		}
		waitFor(ctx, t, "2 replacement pods and 5 available replicas", func(ctx context.Context) (string, bool, error) {
			ready, state := readyPods(ctx, t, c, ns, "app=web")
			for _, p := range ready {
				if _, old := deleted[p.UID]; old {
					return state + "; a deleted pod is still there", false, nil
				}
			}
			for _, name := range deleted {
				if _, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return state + "; deleted pod " + name + " not gone yet", false, nil
				}
			}
			d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return "", false, err
			}
			state += fmt.Sprintf("; deployment available %d", d.Status.AvailableReplicas)
			return state, len(ready) == 5 && d.Status.AvailableReplicas == 5, nil
		})
		t.Logf("2 deleted pods replaced, deployment back to 5 available in %s", time.Since(began).Round(time.Millisecond))
	})

	t.Run("statefulset of 3 ready", func(t *testing.T) {
		ns := createNamespace(ctx, t, c, "sts")
		labels := map[string]string{"app": "db"}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
			Spec: corev1.ServiceSpec{
				ClusterIP: corev1.ClusterIPNone,
				Selector:  labels,
				Ports:     []corev1.ServicePort{{Name: "db", Port: 5432}},
			},
		}
		if _, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
			Spec: appsv1.StatefulSetSpec{
				Replicas:    ptr(int32(3)),
				ServiceName: "db",
				Selector:    &metav1.LabelSelector{MatchLabels: labels},
				Template:    podTemplate(labels),
			},
		}
		began := time.Now()
		if _, err := c.Client.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(ctx, t, "statefulset db with 3 ready replicas", func(ctx context.Context) (string, bool, error) {
			ready, state := readyPods(ctx, t, c, ns, "app=db")
			s, err := c.Client.AppsV1().StatefulSets(ns).Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				return "", false, err
			}
			state += fmt.Sprintf("; statefulset ready %d", s.Status.ReadyReplicas)
			return state, len(ready) == 3 && s.Status.ReadyReplicas == 3, nil
		})
		for i := range 3 {
			name := fmt.Sprintf("db-%d", i)
			if _, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Errorf("pod %s: %v", name, err)
			}
		}
		t.Logf("statefulset of 3 ready in %s", time.Since(began).Round(time.Millisecond))
	})

	t.Run("static token is subject to RBAC", func(t *testing.T) {
		ns := createNamespace(ctx, t, c, "rbac")
		cfg, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigForToken(readerToken))
		if err != nil {
			t.Fatal(err)
		}
		reader, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reader.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("reader lists pods before any grant: err = %v, want Forbidden", err)
		}
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: ns},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
		}
		if _, err := c.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "faultline-reader"}},
		}
		if _, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(ctx, t, "the reader may list pods", func(ctx context.Context) (string, bool, error) {
			_, err := reader.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return fmt.Sprint(err), err == nil, nil
		})
		if _, err := reader.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "nope"},
			Spec:       podTemplate(nil).Spec,
		}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("reader creates a pod: err = %v, want Forbidden", err)
		}

		stranger, err := kubernetes.NewForConfig(c.ConfigForToken("no-such-token"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stranger.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
			t.Errorf("unknown token lists pods: err = %v, want Unauthorized", err)
		}
	})
}

// TestStartWithoutBinaries checks the rule for a missing part: skip locally, fail under CI=true.
func TestStartWithoutBinaries(t *testing.T) {
	empty := t.TempDir()
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			r := &recordingTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				kube.Start(r, kube.WithBinDir(empty))
				r.returned = true
			}()
			<-done
			wantSkip, wantFail := ci != "true", ci == "true"
			if r.skipped != wantSkip || r.failed != wantFail || r.returned {
				t.Fatalf("skipped=%v failed=%v returned=%v, want skipped=%v failed=%v", r.skipped, r.failed, r.returned, wantSkip, wantFail)
			}
			if !strings.Contains(r.msg, "kubernetes test binaries not built: run scripts/testenv-kube") {
				t.Errorf("message = %q", r.msg)
			}
		})
	}
}

// recordingTB records Skip and Fatal instead of acting on the real test.
type recordingTB struct {
	testing.TB
	skipped, failed, returned bool
	msg                       string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skip(args ...any) {
	r.skipped, r.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recordingTB) Skipf(format string, args ...any) { r.Skip(fmt.Sprintf(format, args...)) }
func (r *recordingTB) Fatal(args ...any) {
	r.failed, r.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recordingTB) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }

func ptr[T any](v T) *T { return &v }

func podTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
		},
	}
}

// createNamespace creates a namespace and waits for its default ServiceAccount, without which the
// controllers' pod creations are refused.
func createNamespace(ctx context.Context, t *testing.T, c *kube.Cluster, prefix string) string {
	t.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	waitFor(ctx, t, "default ServiceAccount in "+ns.Name, func(ctx context.Context) (string, bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "not found", false, nil
		}
		return "", err == nil, err
	})
	return ns.Name
}

// readyPods lists the Running and Ready pods (not being deleted) that match selector, and describes all.
func readyPods(ctx context.Context, t *testing.T, c *kube.Cluster, ns, selector string) ([]corev1.Pod, string) {
	t.Helper()
	list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Sprintf("list pods: %v", err)
	}
	var ready []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				ready = append(ready, p)
			}
		}
	}
	return ready, fmt.Sprintf("%d pods, %d running and ready", len(list.Items), len(ready))
}

// waitFor polls cond until it reports done, failing the test when ctx ends first.
func waitFor(ctx context.Context, t *testing.T, what string, cond func(context.Context) (string, bool, error)) {
	t.Helper()
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var state string
	for {
		s, done, err := cond(ctx)
		if err != nil {
			t.Fatalf("wait for %s: %v", what, err)
		}
		if done {
			return
		}
		state = s
		select {
		case <-ctx.Done():
			t.Fatalf("wait for %s: %v (last: %s)", what, ctx.Err(), state)
		case <-ticker.C:
		}
	}
}

// TestStartWithMetricsServerMissing: a cluster asked WithMetricsServer names metrics-server and
// kwok's metrics files among the missing parts, so that the skip says what to build.
func TestStartWithMetricsServerMissing(t *testing.T) {
	t.Setenv("CI", "")
	r := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		kube.Start(r, kube.WithBinDir(t.TempDir()), kube.WithMetricsServer())
		r.returned = true
	}()
	<-done
	if !r.skipped || r.returned {
		t.Fatalf("skipped=%v returned=%v, want a skip", r.skipped, r.returned)
	}
	for _, part := range []string{"metrics-server", "kwok-metrics.yaml", "kwok-crds.yaml"} {
		if !strings.Contains(r.msg, part) {
			t.Errorf("message %q does not name %s", r.msg, part)
		}
	}
}
