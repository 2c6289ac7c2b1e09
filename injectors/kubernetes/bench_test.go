package kubernetes_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kinj "github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/runbooks"
)

// BenchmarkPodKillOnePercent measures pod-kill's Prepare+Apply choosing 1% of N pods of one
// Deployment: a paged list, the owner lookups, the choice, the policy, and the deletions. The
// baseline is what any selection costs at least: one paged list of the same pods, in the same run.
// The pods stay Pending (their node selector matches no node) so that the ReplicaSet can create
// thousands quickly; faultline's work does not depend on the phase.
func BenchmarkPodKillOnePercent(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		c := cluster.Get(b)
		f := kubefix.New(b, c.Client, "bench", kubefix.OptIn())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: f.NS},
			Spec: appsv1.DeploymentSpec{
				Replicas: kubefix.Ptr(int32(n)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
					Spec: corev1.PodSpec{
						Containers:   []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
						NodeSelector: map[string]string{"faultline.dev/no-such-node": "true"},
					},
				},
			},
		}
		if _, err := c.Client.AppsV1().Deployments(f.NS).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		f.Until(ctx, fmt.Sprintf("%d pods", n), func(ctx context.Context) (string, bool, error) {
			ps, err := f.LivePods(ctx, "app=web")
			return fmt.Sprintf("%d pods", len(ps)), len(ps) == n, err
		})
		e := env(b, c, runbooks.Policy{})
		fault := podKill(runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: []string{f.NS}, LabelSelector: "app=web"},
			Mode: runbooks.ModeFixedPercent, Value: 1, GracePeriod: grace0()})

		b.Run(fmt.Sprintf("pods=%d/baseline-list", n), func(b *testing.B) {
			for b.Loop() {
				opts := metav1.ListOptions{LabelSelector: "app=web", Limit: 500}
				for {
					l, err := c.Client.CoreV1().Pods(f.NS).List(ctx, opts)
					if err != nil {
						b.Fatal(err)
					}
					if opts.Continue = l.Continue; opts.Continue == "" {
						break
					}
				}
			}
		})
		b.Run(fmt.Sprintf("pods=%d/prepare+apply", n), func(b *testing.B) {
			for b.Loop() {
				act, err := kinj.PodKill{}.Prepare(ctx, fault, e)
				if err != nil {
					b.Fatal(err)
				}
				if got := len(act.Targets()); got != n/100 {
					b.Fatalf("%d targets, want %d", got, n/100)
				}
				if err := act.Apply(ctx, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
