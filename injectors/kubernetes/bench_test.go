package kubernetes_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	kinj "github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/internal/testenv/kubefix"
	"github.com/faultline-dev/faultline/runbooks"
)

// createPods creates pods web-FROM … web-(TO-1), 32 at a time. They stay Pending (their node
// selector matches no node): faultline's work does not depend on the phase, and the control
// plane is spared running thousands of them.
func createPods(ctx context.Context, cs kubernetes.Interface, ns string, names []string) error {
	sem := make(chan struct{}, 32)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for _, name := range names {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{
					Containers:   []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
					NodeSelector: map[string]string{"faultline.dev/no-such-node": "true"},
				},
			}
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// BenchmarkPodKillOnePercent measures pod-kill's Prepare+Apply choosing 1% of N pods in one
// namespace: a paged list, the owner and namespace lookups, the choice, the policy check, and the
// deletions. The baseline is what any selection costs at least: one paged list of the same pods,
// measured in the same run. The killed pods are re-created, untimed, after every iteration.
func BenchmarkPodKillOnePercent(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		c := cluster.Get(b)
		f := kubefix.New(b, c.Client, "bench", kubefix.OptIn())
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("web-%05d", i)
		}
		if err := createPods(ctx, c.Client, f.NS, names); err != nil {
			b.Fatal(err)
		}
		e := env(b, c, runbooks.Policy{})
		fault := podKill(runbooks.PodKill{PodTarget: runbooks.PodTarget{Namespaces: []string{f.NS}, LabelSelector: "app=web"},
			Mode: runbooks.ModeFixedPercent, Value: 1, GracePeriod: grace0()})

		b.Run(fmt.Sprintf("pods=%d/baseline-list", n), func(b *testing.B) {
			for range b.N {
				opts := metav1.ListOptions{LabelSelector: "app=web", Limit: 500}
				got := 0
				for {
					l, err := c.Client.CoreV1().Pods(f.NS).List(ctx, opts)
					if err != nil {
						b.Fatal(err)
					}
					got += len(l.Items)
					if opts.Continue = l.Continue; opts.Continue == "" {
						break
					}
				}
				if got != n {
					b.Fatalf("listed %d pods, want %d", got, n)
				}
			}
		})
		b.Run(fmt.Sprintf("pods=%d/prepare", n), func(b *testing.B) {
			for range b.N {
				if _, err := (kinj.PodKill{}).Prepare(ctx, fault, e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("pods=%d/prepare+apply", n), func(b *testing.B) {
			for range b.N {
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
				b.StopTimer()
				var killed []string
				for _, tgt := range act.Targets() {
					name := strings.Fields(tgt)[1] // "pod NS/NAME (uid …) …"
					killed = append(killed, name[strings.IndexByte(name, '/')+1:])
				}
				if err := createPods(ctx, c.Client, f.NS, killed); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
