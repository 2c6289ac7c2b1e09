package realnode

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// HTTPDPort is the port the httpd image serves on.
const HTTPDPort = 8080

// HTTPDImage loads the httpd image (./httpd: an HTTP server on HTTPDPort, and a client) once and
// returns its name.
func (n *Node) HTTPDImage(ctx context.Context) (string, error) {
	n.imageMu.Lock()
	defer n.imageMu.Unlock()
	if n.httpdBin == "" {
		bin, err := n.LoadImage(ctx, HTTPDImage, httpdPackage)
		if err != nil {
			return "", err
		}
		n.httpdBin = bin
	}
	return HTTPDImage, nil
}

// HTTPDDeployment is a Deployment of replicas httpd pods (label app=NAME) that the scheduler puts on
// the real node; readiness is an HTTP probe on /healthz. Create it with the cluster's client.
func (n *Node) HTTPDDeployment(namespace, name string, replicas int32, image string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	grace := int64(2)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{corev1.LabelHostname: n.Name},
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name:            "httpd",
						Image:           image,
						ImagePullPolicy: corev1.PullNever,
						Ports:           []corev1.ContainerPort{{ContainerPort: HTTPDPort}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: "/healthz", Port: intstr.FromInt32(HTTPDPort),
							}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
}

// WaitPodsReady waits until want pods matching selector in namespace run on the node, Ready with an
// IP, and returns them.
func (n *Node) WaitPodsReady(ctx context.Context, namespace, selector string, want int) ([]corev1.Pod, error) {
	var ready []corev1.Pod
	err := poll(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		list, err := n.cluster.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return fmt.Errorf("list pods %s in %s: %w", selector, namespace, err)
		}
		ready = ready[:0]
		for _, p := range list.Items {
			if p.Spec.NodeName == n.Name && p.Status.PodIP != "" && p.DeletionTimestamp == nil && podReady(&p) {
				ready = append(ready, p)
			}
		}
		if len(ready) != want {
			return fmt.Errorf("%d of %d pods %s in %s Ready on %s", len(ready), want, selector, namespace, n.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for pods: %w", err)
	}
	return ready, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Probe sends one GET to url from inside the network namespace netns (a Sandbox.NetNS; "" for the
// host) with the httpd client, and returns how long the request took. HTTPDImage must have been
// loaded.
func (n *Node) Probe(ctx context.Context, netns, url string, timeout time.Duration) (time.Duration, error) {
	n.imageMu.Lock()
	bin := n.httpdBin
	n.imageMu.Unlock()
	if bin == "" {
		return 0, fmt.Errorf("probe %s: load the httpd image first (Node.HTTPDImage)", url)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	out, err := inNetNS(ctx, netns, bin, "probe", url, timeout.String())
	if err != nil {
		return 0, err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	d, err := time.ParseDuration(lines[len(lines)-1])
	if err != nil {
		return 0, fmt.Errorf("probe %s: output %q: %w", url, out, err)
	}
	return d, nil
}

// Connects opens count TCP connections to addr from inside the network namespace netns ("" for
// the host), each given timeout to be established, and returns how many were. HTTPDImage must
// have been loaded.
func (n *Node) Connects(ctx context.Context, netns, addr string, count int, timeout time.Duration) (int, error) {
	n.imageMu.Lock()
	bin := n.httpdBin
	n.imageMu.Unlock()
	if bin == "" {
		return 0, fmt.Errorf("connects to %s: load the httpd image first (Node.HTTPDImage)", addr)
	}
	// 16 at a time, each at most timeout: the whole batch is bounded.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(count/16+1)*timeout+30*time.Second)
	defer cancel()
	out, err := inNetNS(ctx, netns, bin, "connects", addr, strconv.Itoa(count), timeout.String())
	if err != nil {
		return 0, err
	}
	ok, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, fmt.Errorf("connects to %s: output %q: %w", addr, out, err)
	}
	return ok, nil
}

// inNetNS runs bin in the network namespace netns, or on the host for "".
func inNetNS(ctx context.Context, netns, bin string, args ...string) ([]byte, error) {
	if netns == "" {
		return run(ctx, bin, args...)
	}
	return InNetNS(ctx, netns, bin, args...)
}
