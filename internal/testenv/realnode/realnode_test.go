package realnode_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faultline-dev/faultline/internal/testenv/kube"
	"github.com/faultline-dev/faultline/internal/testenv/realnode"
)

// TestRealNodePods runs two httpd pods on the real node and checks what a node agent relies on:
// pod IPs reachable from the host and from another pod, the pod's network namespace found through
// CRI, an iptables DROP inside it cutting traffic and its removal restoring it, and nothing left on
// the host once the node stops.
func TestRealNodePods(t *testing.T) {
	ctx := t.Context()
	c := kube.Start(t, kube.WithRealNode())
	began := time.Now()
	n := realnode.Start(ctx, t, c)
	t.Logf("timing: real node Ready %s after start", time.Since(began).Round(time.Millisecond))
	// kwok nodes keep working beside the real one.
	if err := c.AddNodes(ctx, 1, "kwok"); err != nil {
		t.Fatal(err)
	}

	began = time.Now()
	img, err := n.HTTPDImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: httpd image built and imported in %s", time.Since(began).Round(time.Millisecond))
	began = time.Now()
	dep := n.HTTPDDeployment("default", "web", 2, img)
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	pods, err := n.WaitPodsReady(wctx, "default", "app=web", 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: Deployment created -> 2/2 pods Ready in %s", time.Since(began).Round(time.Millisecond))

	// The host reaches each pod, and the pod that answers is the one asked.
	for _, p := range pods {
		body, err := get(ctx, "http://"+p.Status.PodIP+":8080/", 5*time.Second)
		if err != nil {
			t.Fatalf("host -> pod %s: %v", p.Name, err)
		}
		if !strings.HasPrefix(body, p.Name+" ") {
			t.Fatalf("host -> pod %s at %s answered %q, want its name first", p.Name, p.Status.PodIP, body)
		}
	}

	// The pods' network namespaces through CRI, as the agent finds them.
	a, err := n.Sandbox(ctx, "default", pods[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Sandbox(ctx, "default", pods[1].Name)
	if err != nil {
		t.Fatal(err)
	}
	for i, sb := range []realnode.Sandbox{a, b} {
		if sb.IP.String() != pods[i].Status.PodIP || sb.Pod != pods[i].Name || sb.UID != string(pods[i].UID) {
			t.Fatalf("sandbox %+v does not match pod %s (%s, uid %s)", sb, pods[i].Name, pods[i].Status.PodIP, pods[i].UID)
		}
		viaPath, err := realnode.InNetNS(ctx, sb.NetNS, "readlink", "/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		viaPID, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", sb.PID))
		if err != nil {
			t.Fatal(err)
		}
		host, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(viaPath)); got != viaPID || got == host {
			t.Fatalf("pod %s: netns %s is %s, sandbox pid %d's is %s, the host's %s", sb.Pod, sb.NetNS, got, sb.PID, viaPID, host)
		}
	}

	// Pod to pod.
	urlB := "http://" + b.IP.String() + ":8080/"
	d, err := n.Probe(ctx, a.NetNS, urlB, 5*time.Second)
	if err != nil {
		t.Fatalf("pod %s -> pod %s: %v", a.Pod, b.Pod, err)
	}
	t.Logf("timing: pod -> pod request %s", d)

	// Pod to pod from inside the container, through the apiserver, the kubelet and containerd's
	// streaming server (exec), and the pod's log: what WithRealNode sets up the apiserver for.
	if kubectl, err := exec.LookPath("kubectl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kubectl not installed (scripts/testenv)")
		}
		t.Log("kubectl not installed: exec and logs not checked (scripts/testenv installs it)")
	} else {
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "exec", a.Pod, "--",
			"/httpd", "probe", urlB).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), b.Pod+" "+a.IP.String()+":") {
			t.Fatalf("kubectl exec %s -- /httpd probe %s: %v: %q, want pod %s answering pod %s's address", a.Pod, urlB, err, out, b.Pod, a.IP)
		}
		out, err = exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "logs", b.Pod).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "httpd listening") {
			t.Fatalf("kubectl logs %s: %v: %q", b.Pod, err, out)
		}
	}

	// A DROP inside B's namespace cuts B off from A and from the host; removing it restores both.
	rule := []string{"INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP"}
	if _, err := realnode.InNetNS(ctx, b.NetNS, "iptables", append([]string{"-w", "5", "-I"}, rule...)...); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Probe(ctx, a.NetNS, urlB, time.Second); err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("pod -> pod with DROP in the target pod: got %v, want a timeout", err)
	}
	if _, err := get(ctx, urlB, time.Second); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("host -> pod with DROP in the pod: got %v, want a timeout", err)
	}
	if _, err := realnode.InNetNS(ctx, b.NetNS, "iptables", append([]string{"-w", "5", "-D"}, rule...)...); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Probe(ctx, a.NetNS, urlB, 5*time.Second); err != nil {
		t.Fatalf("pod -> pod after removing the DROP: %v", err)
	}
	if _, err := get(ctx, urlB, 5*time.Second); err != nil {
		t.Fatalf("host -> pod after removing the DROP: %v", err)
	}

	// Stopping leaves nothing behind, with the pods still running.
	began = time.Now()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: stop and host cleanup %s", time.Since(began).Round(time.Millisecond))
	if _, err := c.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node %s after Stop: got %v, want it deleted", n.Name, err)
	}
	if left := n.Leftovers(ctx); len(left) > 0 {
		t.Fatalf("left behind after Stop: %v", left)
	}
	for _, sb := range []realnode.Sandbox{a, b} {
		if _, err := os.Stat(sb.NetNS); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pod network namespace %s still there: %v", sb.NetNS, err)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", sb.PID)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("sandbox process %d still there: %v", sb.PID, err)
		}
	}
}

// get sends one GET from the host with a deadline of timeout.
func get(ctx context.Context, url string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// TestRealNodeRemainsOfAKilledTestAreUndone kills a test binary that runs a real node with a pod
// (its cleanups never run; containerd's shims and the pod outlive it) and checks that the next
// Start undoes those remains before it starts its own node.
func TestRealNodeRemainsOfAKilledTestAreUndone(t *testing.T) {
	const childEnv = "FAULTLINE_REALNODE_CHILD"
	ctx := t.Context()
	if os.Getenv(childEnv) == "1" {
		c := kube.Start(t, kube.WithRealNode())
		n := realnode.Start(ctx, t, c)
		img, err := n.HTTPDImage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, n.HTTPDDeployment("default", "doomed", 1, img), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods, err := n.WaitPodsReady(ctx, "default", "app=doomed", 1)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := n.Sandbox(ctx, "default", pods[0].Name)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("READY %d %s %s\n", sb.PID, sb.NetNS, n.Dir)
		<-ctx.Done() // killed here
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("a real node needs root") // the child skips, or fails under CI=true, on what else is missing
	}

	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	child := exec.CommandContext(cctx, os.Args[0], "-test.run=^TestRealNodeRemainsOfAKilledTestAreUndone$", "-test.v", "-test.count=1")
	child.Env = append(os.Environ(), childEnv+"=1")
	child.Stderr = os.Stderr
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var pausePID int
	var netnsPath, dir string
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "READY" {
			pausePID, _ = strconv.Atoi(f[1])
			netnsPath, dir = f[2], f[3]
			break
		}
	}
	if pausePID == 0 {
		_ = child.Wait()
		all := strings.Join(lines, "\n")
		if strings.Contains(all, "--- SKIP") {
			t.Skipf("the child test skipped:\n%s", all)
		}
		t.Fatalf("the child test never got its pod Ready:\n%s", all)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pausePID)); err != nil {
		t.Fatalf("the killed test's pod (sandbox pid %d) did not outlive it, nothing to undo: %v", pausePID, err)
	}

	c := kube.Start(t, kube.WithRealNode())
	n := realnode.Start(ctx, t, c)
	for _, p := range []string{fmt.Sprintf("/proc/%d", pausePID), netnsPath, dir} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s of the killed test's node is still there: %v", p, err)
		}
	}
	img, err := n.HTTPDImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, n.HTTPDDeployment("default", "web", 1, img), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods, err := n.WaitPodsReady(cctx, "default", "app=web", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(ctx, "http://"+pods[0].Status.PodIP+":8080/", 5*time.Second); err != nil {
		t.Fatalf("host -> pod on the new node: %v", err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRealNodePrivilegedPodEntersAnotherPod is a node agent's way in, from a pod: a privileged
// hostPID pod whose image carries the host's iptables and nsenter enters another pod's network
// namespace through /proc/<sandbox pid>/ns/net, and a DROP it puts there cuts the pod off.
func TestRealNodePrivilegedPodEntersAnotherPod(t *testing.T) {
	ctx := t.Context()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kubectl not installed (scripts/testenv)")
		}
		t.Skip("kubectl not installed (scripts/testenv installs it)")
	}
	c := kube.Start(t, kube.WithRealNode())
	n := realnode.Start(ctx, t, c)
	img, err := n.HTTPDImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const toolsImage = "faultline.test/httpd-tools:v1"
	began := time.Now()
	if _, err := n.LoadImage(ctx, toolsImage, "github.com/faultline-dev/faultline/internal/testenv/realnode/httpd",
		realnode.WithHostTools("iptables", "nsenter")); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: image with host iptables and nsenter built and imported in %s", time.Since(began).Round(time.Millisecond))
	if _, err := c.Client.AppsV1().Deployments("default").Create(ctx, n.HTTPDDeployment("default", "web", 1, img), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	privileged := true
	agent := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "default", Labels: map[string]string{"app": "agent"}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{corev1.LabelHostname: n.Name},
			HostNetwork:  true,
			HostPID:      true,
			Containers: []corev1.Container{{
				Name: "agent", Image: toolsImage, ImagePullPolicy: corev1.PullNever,
				Env:             []corev1.EnvVar{{Name: "LISTEN", Value: "127.0.0.1:0"}},
				SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, agent, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	pods, err := n.WaitPodsReady(wctx, "default", "app=web", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitPodsReady(wctx, "default", "app=agent", 1); err != nil {
		t.Fatal(err)
	}
	sb, err := n.Sandbox(ctx, "default", pods[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + sb.IP.String() + ":8080/"
	inPod := func(args ...string) string {
		t.Helper()
		full := append([]string{"--kubeconfig", c.Kubeconfig, "exec", "agent", "--", "nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", sb.PID), "--"}, args...)
		out, err := exec.CommandContext(ctx, kubectl, full...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v: %s", strings.Join(full[2:], " "), err, out)
		}
		return string(out)
	}
	rule := []string{"INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP"}
	inPod(append([]string{"iptables", "-w", "5", "-I"}, rule...)...)
	if rules := inPod("iptables", "-w", "5", "-S", "INPUT"); !strings.Contains(rules, "-A INPUT -p tcp -m tcp --dport 8080 -j DROP") {
		t.Fatalf("the rule is not in the pod's namespace:\n%s", rules)
	}
	if _, err := get(ctx, url, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("host -> pod with the agent's DROP: got %v, want a timeout", err)
	}
	inPod(append([]string{"iptables", "-w", "5", "-D"}, rule...)...)
	if _, err := get(ctx, url, 5*time.Second); err != nil {
		t.Fatalf("host -> pod after the agent removed its DROP: %v", err)
	}
}
