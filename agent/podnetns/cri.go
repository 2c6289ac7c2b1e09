package podnetns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultEndpoints are the runtime sockets tried when none is configured: containerd's, then CRI-O's.
var DefaultEndpoints = []string{"/run/containerd/containerd.sock", "/var/run/crio/crio.sock"}

// The labels the kubelet puts on every sandbox.
const (
	labelUID       = "io.kubernetes.pod.uid"
	labelNamespace = "io.kubernetes.pod.namespace"
	labelName      = "io.kubernetes.pod.name"
)

// CRI asks a container runtime for pod sandboxes.
type CRI struct {
	// Endpoints are unix socket paths (or unix:// URLs), tried in order; the first whose socket
	// exists is used.
	Endpoints []string
	// Proc, when set, finds the sandbox process by pod UID if the runtime's verbose status has no
	// pid (runtimes differ in what they put there).
	Proc *Proc

	// One connection serves every Resolve (a runtime restarted behind the same socket is
	// reconnected by gRPC): a connection per pod cost a dial and an HTTP/2 handshake each.
	mu     sync.Mutex
	conn   *grpc.ClientConn
	connEP string
}

// errNoRuntime means no configured runtime socket exists.
var errNoRuntime = errors.New("no container runtime socket")

// endpoint returns the first configured socket that exists.
func (c *CRI) endpoint() (string, error) {
	for _, e := range c.Endpoints {
		path := strings.TrimPrefix(e, "unix://")
		if st, err := os.Stat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
			return "unix://" + path, nil
		}
	}
	return "", fmt.Errorf("%w: none of %s exists (mount the runtime's socket, or set --cri-socket)", errNoRuntime, strings.Join(c.Endpoints, ", "))
}

// Check connects to the runtime and asks its version, for readiness.
func (c *CRI) Check(ctx context.Context) (string, error) {
	ep, err := c.endpoint()
	if err != nil {
		return "", err
	}
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", ep, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := runtime.NewRuntimeServiceClient(conn).Version(ctx, &runtime.VersionRequest{})
	if err != nil {
		return "", fmt.Errorf("CRI version from %s: %w", ep, err)
	}
	return fmt.Sprintf("%s %s (%s)", v.RuntimeName, v.RuntimeVersion, ep), nil
}

// Resolve finds the ready sandbox of pod namespace/name (and uid, when given) and its network
// namespace, from PodSandboxStatus's verbose info.
func (c *CRI) Resolve(ctx context.Context, namespace, name, uid string) (Pod, error) {
	ep, conn, err := c.client()
	if err != nil {
		return Pod{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rs := runtime.NewRuntimeServiceClient(conn)
	sel := map[string]string{labelNamespace: namespace, labelName: name}
	if uid != "" {
		sel = map[string]string{labelUID: uid}
	}
	list, err := rs.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{Filter: &runtime.PodSandboxFilter{LabelSelector: sel}})
	if err != nil {
		return Pod{}, fmt.Errorf("CRI ListPodSandbox on %s: %w", ep, err)
	}
	var ready *runtime.PodSandbox
	seen := false
	for _, sb := range list.Items {
		md := sb.GetMetadata()
		if md.GetNamespace() != namespace || md.GetName() != name || (uid != "" && md.GetUid() != uid) {
			continue
		}
		seen = true
		if sb.State == runtime.PodSandboxState_SANDBOX_READY && (ready == nil || sb.CreatedAt > ready.CreatedAt) {
			ready = sb
		}
	}
	if ready == nil {
		if seen {
			return Pod{}, fmt.Errorf("%w: pod %s/%s has no ready sandbox", ErrNotReady, namespace, name)
		}
		return Pod{}, fmt.Errorf("%w: no sandbox of pod %s/%s (uid %q) among this node's (%s)", ErrNotOnNode, namespace, name, uid, ep)
	}
	st, err := rs.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: ready.Id, Verbose: true})
	if err != nil {
		return Pod{}, fmt.Errorf("CRI PodSandboxStatus %s on %s: %w", ready.Id, ep, err)
	}
	p := Pod{Namespace: namespace, Name: name, UID: ready.GetMetadata().GetUid(), Via: "cri " + ep}
	p.PausePID, p.RuntimeNetns = verboseInfo(st.GetInfo())
	if p.PausePID == 0 && c.Proc != nil {
		if pp, err := c.Proc.Resolve(ctx, p.UID); err == nil {
			p.PausePID = pp.PausePID
		}
	}
	switch {
	case p.PausePID > 0:
		p.Netns = "/proc/" + strconv.Itoa(p.PausePID) + "/ns/net"
	case p.RuntimeNetns != "":
		p.Netns = p.RuntimeNetns
	default:
		return Pod{}, fmt.Errorf("%w: the runtime at %s told neither the sandbox pid nor its network namespace of pod %s/%s", ErrNotReady, ep, namespace, name)
	}
	return p, nil
}

// client returns the connection to the first configured socket that exists, made on first use
// and again when that socket changes.
func (c *CRI) client() (string, *grpc.ClientConn, error) {
	ep, err := c.endpoint()
	if err != nil {
		return "", nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && c.connEP == ep {
		return ep, c.conn, nil
	}
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", nil, fmt.Errorf("connect %s: %w", ep, err)
	}
	if c.conn != nil {
		_ = c.conn.Close()
	}
	c.conn, c.connEP = conn, ep
	return ep, conn, nil
}

// Close closes the connection Resolve keeps; a later Resolve connects again.
func (c *CRI) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// verboseInfo reads the sandbox pid and network namespace path from a verbose status's info:
// containerd and CRI-O both put the OCI runtime spec and the pid in its "info" JSON.
func verboseInfo(info map[string]string) (pid int, netns string) {
	var v struct {
		Pid         int `json:"pid"`
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if json.Unmarshal([]byte(info["info"]), &v) != nil {
		return 0, ""
	}
	for _, n := range v.RuntimeSpec.Linux.Namespaces {
		if n.Type == "network" {
			netns = n.Path
		}
	}
	return v.Pid, netns
}
