// Package realnode runs a real Kubernetes node for tests beside the control plane of
// internal/testenv/kube: containerd (runc, the CNI bridge plugin) and a kubelet built by
// scripts/testenv-kube. Its pods are real processes with real network namespaces, which is what a
// node agent enters to put network faults inside a pod. kwok nodes of the same cluster keep working.
//
//	c := kube.Start(t, kube.WithRealNode())
//	n := realnode.Start(ctx, t, c)              // node Ready; everything undone at cleanup
//	img, _ := n.HTTPDImage(ctx)                 // images are static Go binaries, imported (no registry)
//	c.Client.AppsV1().Deployments(ns).Create(ctx, n.HTTPDDeployment(ns, "web", 2, img), …)
//	pods, _ := n.WaitPodsReady(ctx, ns, "app=web", 2)
//	sb, _ := n.Sandbox(ctx, ns, pods[0].Name)  // through CRI, like the agent: IP, netns path, pid
//	out, _ := realnode.InNetNS(ctx, sb.NetNS, "iptables", "-S")
//	d, err := n.Probe(ctx, sb.NetNS, "http://"+otherPodIP+":8080/", 2*time.Second)
//
// One real node runs on a host at a time (a host-wide lock; Start waits for it): the kubelet uses
// fixed host paths whatever its configuration. Start needs root, the kubelet binary, and the Debian
// packages containerd, runc and containernetworking-plugins; without them it skips the test, or
// fails it when CI=true. Pods use the network 10.88.0.0/16 on the bridge flrn0.
//
// Cleanup stops the kubelet, removes every sandbox through CRI (so that the CNI plugins release
// addresses, rules and namespaces), stops containerd, and undoes what the node changed on the host:
// the KUBE-* and CNI-* iptables chains it added, the bridge, mounts, the kubepods cgroups and fixed
// directories it created, and the sysctls the kubelet and the bridge plugin set
// (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, net.ipv4.ip_forward).
package realnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/faultline-dev/faultline/internal/testenv/kube"
)

const (
	// ContainerdNamespace is the containerd namespace of the CRI plugin, where pods' containers and
	// images live.
	ContainerdNamespace = "k8s.io"
	// DefaultNodeName is the node's name unless WithNodeName says otherwise.
	DefaultNodeName = "real-node"

	cniBinDir  = "/usr/lib/cni"
	bridgeName = "flrn0"
	cniNetwork = "faultline-realnode"
)

// PodNetwork is the pods' address range on the real node.
var PodNetwork = netip.MustParsePrefix("10.88.0.0/16")

// Node is a running real node. Its processes stop and its host changes are undone when the test ends.
type Node struct {
	// Name is the Node's name in the cluster.
	Name string
	// IP is the node's InternalIP (an address of a host interface).
	IP netip.Addr
	// CRISocket is the path of containerd's socket: the CRI endpoint is "unix://" + CRISocket.
	CRISocket string
	// Namespace is the containerd namespace of the pods' containers and images.
	Namespace string
	// Dir holds the node's files: containerd.log, kubelet.log, configuration, state.
	Dir string

	t       testing.TB
	cluster *kube.Cluster
	host    *hostState
	lock    *os.File

	containerd, kubelet *process

	imageMu  sync.Mutex
	httpdBin string
	stopOnce sync.Once
	stopErr  error
}

// Option configures Start.
type Option func(*options)

type options struct {
	nodeName     string
	kubelet      string
	startTimeout time.Duration
}

// WithNodeName names the Node (default DefaultNodeName).
func WithNodeName(name string) Option { return func(o *options) { o.nodeName = name } }

// WithKubelet sets the kubelet binary (default: kubelet in kube.DefaultBinDir()).
func WithKubelet(path string) Option { return func(o *options) { o.kubelet = path } }

// WithStartTimeout bounds how long Start waits, the host-wide lock included (default 3 minutes).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// missing lists what Start needs that this host lacks.
func missing(kubelet string) []string {
	var m []string
	if os.Geteuid() != 0 {
		m = append(m, "root")
	}
	if st, err := os.Stat(kubelet); err != nil || st.Mode().Perm()&0o111 == 0 {
		m = append(m, kubelet+" (scripts/testenv-kube)")
	}
	for _, tool := range []string{"containerd", "ctr", "runc", "nsenter", "iptables", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			m = append(m, tool)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			m = append(m, filepath.Join(cniBinDir, p)+" (containernetworking-plugins)")
		}
	}
	return m
}

// Start runs a real node for cluster, which must have been started with kube.WithRealNode(), and
// waits until the Node is Ready.
func Start(ctx context.Context, t testing.TB, cluster *kube.Cluster, opts ...Option) *Node {
	t.Helper()
	o := options{nodeName: DefaultNodeName, startTimeout: 3 * time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	if o.kubelet == "" {
		o.kubelet = filepath.Join(kube.DefaultBinDir(), "kubelet")
	}
	if m := missing(o.kubelet); len(m) > 0 {
		msg := "real node: missing " + strings.Join(m, ", ") + " (root, scripts/testenv)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
	began := time.Now()
	lock, err := lockHost(ctx, t.Logf)
	if err != nil {
		t.Fatalf("start real node: %v", err)
	}
	n := &Node{Name: o.nodeName, Namespace: ContainerdNamespace, t: t, cluster: cluster, lock: lock}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := n.Stop(sctx); err != nil {
			t.Errorf("stop real node: %v", err)
		}
	})
	if err := n.start(ctx, o); err != nil {
		t.Fatalf("start real node: %v", err)
	}
	t.Logf("real node %s (%s) Ready in %s (files in %s)", n.Name, n.IP, time.Since(began).Round(time.Millisecond), n.Dir)
	return n
}

func (n *Node) start(ctx context.Context, o options) error {
	var err error
	if n.host, err = recordHost(ctx); err != nil {
		return err
	}
	// Not t.TempDir: unix socket paths are limited to 107 bytes and test names are long.
	if n.Dir, err = os.MkdirTemp("", "faultline-realnode-"); err != nil {
		return fmt.Errorf("node dir: %w", err)
	}
	if n.IP, err = nodeIP(bridgeName, PodNetwork); err != nil {
		return err
	}
	for _, d := range []string{"containerd-root", "containerd-state", "cni/net.d", "cni/ipam", "kubelet", "kubelet-pki", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o700); err != nil {
			return fmt.Errorf("node dir: %w", err)
		}
	}
	phase := time.Now()
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	n.t.Logf("real node: containerd ready in %s", time.Since(phase).Round(time.Millisecond))
	phase = time.Now()
	if _, err := n.LoadImage(ctx, PauseImage, pausePackage); err != nil {
		return err
	}
	n.t.Logf("real node: pause image built and imported in %s", time.Since(phase).Round(time.Millisecond))
	phase = time.Now()
	if err := n.startKubelet(ctx, o.kubelet); err != nil {
		return err
	}
	n.t.Logf("real node: kubelet started, node Ready in %s", time.Since(phase).Round(time.Millisecond))
	return nil
}

func (n *Node) startContainerd(ctx context.Context) error {
	n.CRISocket = filepath.Join(n.Dir, "containerd.sock")
	streamPort, err := freePort()
	if err != nil {
		return err
	}
	files := map[string]string{
		"containerd.toml":                          containerdConfig(n.Dir, n.CRISocket, streamPort),
		"cni/net.d/10-" + cniNetwork + ".conflist": cniConfig(cniNetwork, bridgeName, PodNetwork, filepath.Join(n.Dir, "cni/ipam")),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(n.Dir, name), []byte(body), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	n.containerd, err = startProcess("containerd", filepath.Join(n.Dir, "containerd.log"), nil,
		"containerd", "--config", filepath.Join(n.Dir, "containerd.toml"))
	if err != nil {
		return err
	}
	err = poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		if err := n.containerd.exited(); err != nil {
			return permanentError{fmt.Errorf("%w (log %s)", err, n.containerd.logPath)}
		}
		c, closeConn, err := n.criClient()
		if err != nil {
			return err
		}
		defer closeConn()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = c.Version(cctx, &cri.VersionRequest{})
		return err
	})
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	return nil
}

func (n *Node) startKubelet(ctx context.Context, bin string) error {
	kubeconfig, err := n.cluster.NodeKubeconfig(n.Name)
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	healthzPort, err := freePort()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(n.Dir, "kubelet.yaml")
	cfg := kubeletConfig(n.cluster.CAFile(), n.CRISocket, filepath.Join(n.Dir, "pod-logs"), n.IP, port, healthzPort)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write kubelet config: %w", err)
	}
	n.kubelet, err = startProcess("kubelet", filepath.Join(n.Dir, "kubelet.log"), nil, bin,
		"--config", cfgPath, "--kubeconfig", kubeconfig,
		"--root-dir", filepath.Join(n.Dir, "kubelet"), "--cert-dir", filepath.Join(n.Dir, "kubelet-pki"),
		"--hostname-override", n.Name, "--node-ip", n.IP.String(), "--v=2")
	if err != nil {
		return err
	}
	err = poll(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		if err := n.kubelet.exited(); err != nil {
			return permanentError{fmt.Errorf("%w (log %s)", err, n.kubelet.logPath)}
		}
		node, err := n.cluster.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node %s: %w", n.Name, err)
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s is not Ready", n.Name)
	})
	if err != nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	return nil
}

// Stop stops the node and undoes its changes to the host; the test's cleanup calls it too. The error
// lists what could not be undone.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() { n.stopErr = n.stop(ctx) })
	return n.stopErr
}

func (n *Node) stop(ctx context.Context) error {
	var errs []error
	if n.kubelet != nil {
		errs = append(errs, n.kubelet.stop(15*time.Second))
	}
	if n.containerd != nil {
		if n.containerd.exited() == nil {
			errs = append(errs, n.removeSandboxes(ctx))
		}
		errs = append(errs, n.containerd.stop(15*time.Second))
	}
	if n.CRISocket != "" {
		// containerd's shims outlive it; they exit once their sandbox is removed.
		err := poll(ctx, 100*time.Millisecond, func(context.Context) error {
			if pids := processesMatching(n.CRISocket, ""); len(pids) > 0 {
				return fmt.Errorf("shims still running: %v", pids)
			}
			return nil
		})
		if err != nil {
			for _, pid := range processesMatching(n.CRISocket, "") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			errs = append(errs, err)
		}
	}
	if n.host != nil {
		errs = append(errs, n.undoHost(ctx))
	}
	if n.Dir != "" {
		if err := os.RemoveAll(n.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove node dir: %w", err))
		}
	}
	if left := n.Leftovers(ctx); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(left, "; ")))
	}
	if n.lock != nil {
		_ = n.lock.Close()
	}
	if err := errors.Join(errs...); err != nil && n.Dir != "" {
		return fmt.Errorf("%w (logs were in %s)", err, n.Dir)
	}
	return nil
}

// undoHost reverts what the node changed on the host since recordHost.
func (n *Node) undoHost(ctx context.Context) error {
	var errs []error
	// Pods' volumes (service-account tokens) stay mounted when the kubelet stops with pods running.
	if mounts, err := newMounts(n.host.mounts, n.Dir); err != nil {
		errs = append(errs, err)
	} else {
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		if _, err := run(ctx, "ip", "link", "del", bridgeName); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, removeChains(ctx, n.host.chains))
	for _, cg := range kubepodsCgroups() {
		if !n.host.paths[cg] {
			errs = append(errs, removeCgroup(cg))
		}
	}
	for _, p := range fixedHostPaths {
		if !n.host.paths[p] {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
			}
		}
	}
	for s, v := range n.host.sysctls {
		if err := os.WriteFile("/proc/sys/"+s, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", s, v, err))
		}
	}
	return errors.Join(errs...)
}

// Leftovers lists what the node made that is still there: processes, mounts, the bridge, iptables
// chains, cgroups, fixed directories, changed sysctls. Empty after Stop on a clean run.
func (n *Node) Leftovers(ctx context.Context) []string {
	var left []string
	for _, p := range []*process{n.kubelet, n.containerd} {
		if p != nil && p.exited() == nil {
			left = append(left, fmt.Sprintf("%s (pid %d) running", p.name, p.pid()))
		}
	}
	if n.CRISocket != "" {
		if pids := processesMatching(n.CRISocket, ""); len(pids) > 0 {
			left = append(left, fmt.Sprintf("containerd shims running: %v", pids))
		}
	}
	if n.host == nil {
		return left
	}
	if !n.host.paths["/sys/fs/cgroup/kubepods"] && len(kubepodsCgroups()) > 0 {
		if pids := processesMatching("", "/kubepods"); len(pids) > 0 {
			left = append(left, fmt.Sprintf("processes in pod cgroups: %v", pids))
		}
	}
	if mounts, err := newMounts(n.host.mounts, n.Dir); err != nil {
		left = append(left, err.Error())
	} else if len(mounts) > 0 {
		left = append(left, fmt.Sprintf("mounts: %v", mounts))
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		left = append(left, "bridge "+bridgeName)
	}
	if chains, err := nodeChains(ctx); err != nil {
		left = append(left, err.Error())
	} else {
		for c := range chains {
			if !n.host.chains[c] {
				left = append(left, "iptables chain "+c)
			}
		}
	}
	for _, p := range append(kubepodsCgroups(), fixedHostPaths...) {
		if _, err := os.Lstat(p); err == nil && !n.host.paths[p] {
			left = append(left, p)
		}
	}
	for s, v := range n.host.sysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil && strings.TrimSpace(string(b)) != v {
			left = append(left, fmt.Sprintf("sysctl %s=%s (was %s)", s, strings.TrimSpace(string(b)), v))
		}
	}
	return left
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// InNetNS runs a command inside the network namespace at path (a pod's Sandbox.NetNS, or
// /proc/PID/ns/net) with the host's file system, as a node agent does, and returns its stdout.
func InNetNS(ctx context.Context, path, name string, args ...string) ([]byte, error) {
	return run(ctx, "nsenter", append([]string{"--net=" + path, "--", name}, args...)...)
}
