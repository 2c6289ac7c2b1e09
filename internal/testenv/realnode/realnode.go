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
//	n.LoadImage(ctx, "faultline.test/agent:v1", "…/cmd/faultline", realnode.WithHostTools("iptables", "tc"))
//
// Linux only. One real node runs on a host at a time (a host-wide lock; Start waits for it): the
// kubelet uses fixed host paths whatever its configuration. Start needs root (else it skips), the
// kubelet binary and the Debian packages containerd, runc and containernetworking-plugins (without
// them it skips, or fails when CI=true). Pods use the network 10.88.0.0/16 on the bridge flrn0.
// The CRI socket is an ordinary file under Node.Dir: a privileged pod (a node agent) reaches it
// with a hostPath volume, and other pods' namespaces through hostPID and /proc/PID/ns/net.
//
// Cleanup (or Stop) stops the kubelet, deletes the Node, removes every sandbox through CRI (so that
// the CNI plugins release addresses, rules and namespaces), stops containerd, and undoes what the
// node changed on the host: the KUBE-* and CNI-* iptables chains it added, the bridge, mounts, the
// kubepods cgroups and fixed directories it created, and the sysctls the kubelet and the bridge
// plugin set (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, net.ipv4.ip_forward). What
// the host looked like before is kept in /run/faultline-testenv/realnode.json while the node runs:
// when a test binary dies without its cleanup, the next Start undoes that node's remains first.
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
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	dirPrefix  = "faultline-realnode-"
)

// PodCIDR is the pods' address range on the real node.
const PodCIDR = "10.88.0.0/16"

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
	fp      *footprint
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
	lockTimeout  time.Duration
}

// WithNodeName names the Node (default DefaultNodeName).
func WithNodeName(name string) Option { return func(o *options) { o.nodeName = name } }

// WithKubelet sets the kubelet binary (default: kubelet in kube.DefaultBinDir()).
func WithKubelet(path string) Option { return func(o *options) { o.kubelet = path } }

// WithStartTimeout bounds how long Start waits for the node once it holds the host-wide lock
// (default 3 minutes).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// WithLockTimeout bounds how long Start waits for another test's real node to stop (default 20
// minutes: packages run in parallel, and each holds the node for its test).
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// missing lists what Start needs that this host lacks.
func missing(kubelet string) []string {
	var m []string
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
	o := options{nodeName: DefaultNodeName, startTimeout: 3 * time.Minute, lockTimeout: 20 * time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	if o.kubelet == "" {
		o.kubelet = filepath.Join(kube.DefaultBinDir(), "kubelet")
	}
	if os.Geteuid() != 0 {
		t.Skip("a real node needs root (containerd, the kubelet, iptables); not an installable part, so skipped under CI=true too")
	}
	if m := missing(o.kubelet); len(m) > 0 {
		msg := "real node: missing " + strings.Join(m, ", ") + " (scripts/testenv installs them)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	began := time.Now()
	lctx, cancel := context.WithTimeout(ctx, o.lockTimeout)
	lock, err := lockHost(lctx, t.Logf)
	cancel()
	if err != nil {
		t.Fatalf("start real node: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
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
	if err := reapStale(ctx, n.t.Logf); err != nil {
		return err
	}
	var err error
	// Not t.TempDir: unix socket paths are limited to 107 bytes and test names are long.
	if n.Dir, err = os.MkdirTemp("", dirPrefix); err != nil {
		return fmt.Errorf("node dir: %w", err)
	}
	n.CRISocket = filepath.Join(n.Dir, "containerd.sock")
	if n.fp, err = recordFootprint(ctx, n.Dir, n.CRISocket); err != nil {
		_ = os.RemoveAll(n.Dir)
		return err
	}
	if err := n.fp.save(); err != nil {
		return err
	}
	if n.IP, err = nodeIP(bridgeName, netip.MustParsePrefix(PodCIDR)); err != nil {
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
	streamPort, err := freePort()
	if err != nil {
		return err
	}
	files := map[string]string{
		"containerd.toml":                          containerdConfig(n.Dir, n.CRISocket, streamPort),
		"cni/net.d/10-" + cniNetwork + ".conflist": cniConfig(cniNetwork, bridgeName, PodCIDR, filepath.Join(n.Dir, "cni/ipam")),
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
		// The Node goes too, so that a later node of the same name in a shared cluster does not
		// inherit its pods (the pod GC controller deletes pods bound to a missing node).
		err := n.cluster.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete node %s: %w", n.Name, err))
		}
	}
	if n.containerd != nil {
		if n.containerd.exited() == nil {
			errs = append(errs, n.removeSandboxes(ctx))
		}
		errs = append(errs, n.containerd.stop(15*time.Second))
	}
	if n.fp != nil {
		// containerd's shims outlive it; they exit once their sandbox is removed.
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := poll(wctx, 100*time.Millisecond, func(context.Context) error {
			if pids := n.fp.processes(); len(pids) > 0 {
				return fmt.Errorf("shims or pods still running: %v", pids)
			}
			return nil
		})
		cancel()
		if err != nil {
			errs = append(errs, err, n.fp.kill(ctx))
		}
		errs = append(errs, n.fp.undo(ctx))
		if left := n.fp.leftovers(ctx); len(left) > 0 {
			errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(left, "; ")))
		}
	}
	err := errors.Join(errs...)
	if err == nil {
		// Kept when something could not be undone: the next Start tries again.
		err = removeState()
	}
	if n.lock != nil {
		_ = n.lock.Close()
	}
	return err
}

// Leftovers lists what the node made that is still there: processes, mounts, the bridge, iptables
// chains, cgroups, directories, changed sysctls. Empty after Stop.
func (n *Node) Leftovers(ctx context.Context) []string {
	var left []string
	for _, p := range []*process{n.kubelet, n.containerd} {
		if p != nil && p.exited() == nil {
			left = append(left, fmt.Sprintf("%s (pid %d) running", p.name, p.pid()))
		}
	}
	if n.fp != nil {
		left = append(left, n.fp.leftovers(ctx)...)
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
