package realnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Sandbox is a pod as the container runtime sees it: what a node agent needs to enter the pod's
// network namespace.
type Sandbox struct {
	ID        string
	Namespace string     // the pod's Kubernetes namespace
	Pod       string     // the pod's name
	UID       string     // the pod's UID
	IP        netip.Addr // the pod's IP
	// NetNS is the path of the pod's network namespace (/var/run/netns/cni-…), for nsenter --net.
	NetNS string
	// PID is the sandbox's (pause) process; /proc/PID/ns/net is the same namespace.
	PID int
}

// criClient connects to the node's CRI endpoint.
func (n *Node) criClient() (cri.RuntimeServiceClient, func(), error) {
	conn, err := grpc.NewClient("unix://"+n.CRISocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to CRI %s: %w", n.CRISocket, err)
	}
	return cri.NewRuntimeServiceClient(conn), func() { _ = conn.Close() }, nil
}

// Sandbox finds the ready sandbox of pod namespace/name through CRI, the way a node agent does:
// ListPodSandbox, then PodSandboxStatus(verbose) for the network namespace and the pid.
func (n *Node) Sandbox(ctx context.Context, namespace, pod string) (Sandbox, error) {
	c, closeConn, err := n.criClient()
	if err != nil {
		return Sandbox{}, err
	}
	defer closeConn()
	list, err := c.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{Filter: &cri.PodSandboxFilter{
		State: &cri.PodSandboxStateValue{State: cri.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{
			"io.kubernetes.pod.namespace": namespace,
			"io.kubernetes.pod.name":      pod,
		},
	}})
	if err != nil {
		return Sandbox{}, fmt.Errorf("list pod sandboxes: %w", err)
	}
	if len(list.Items) != 1 {
		return Sandbox{}, fmt.Errorf("pod %s/%s: %d ready sandboxes, want 1", namespace, pod, len(list.Items))
	}
	return sandboxStatus(ctx, c, list.Items[0].Id)
}

func sandboxStatus(ctx context.Context, c cri.RuntimeServiceClient, id string) (Sandbox, error) {
	st, err := c.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		return Sandbox{}, fmt.Errorf("pod sandbox %s status: %w", id, err)
	}
	var info struct {
		PID         int `json:"pid"`
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct{ Type, Path string } `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
		return Sandbox{}, fmt.Errorf("pod sandbox %s verbose info: %w", id, err)
	}
	sb := Sandbox{ID: id, PID: info.PID}
	if md := st.GetStatus().GetMetadata(); md != nil {
		sb.Namespace, sb.Pod, sb.UID = md.Namespace, md.Name, md.Uid
	}
	for _, ns := range info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			sb.NetNS = ns.Path
		}
	}
	if ip := st.GetStatus().GetNetwork().GetIp(); ip != "" {
		if sb.IP, err = netip.ParseAddr(ip); err != nil {
			return Sandbox{}, fmt.Errorf("pod sandbox %s IP: %w", id, err)
		}
	}
	if sb.NetNS == "" || sb.PID == 0 {
		return Sandbox{}, fmt.Errorf("pod sandbox %s: no network namespace or pid in its verbose status", id)
	}
	return sb, nil
}

// removeSandboxes stops and removes every sandbox, so that the CNI plugins release the pods'
// addresses, iptables rules and network namespaces before containerd stops.
func (n *Node) removeSandboxes(ctx context.Context) error {
	c, closeConn, err := n.criClient()
	if err != nil {
		return err
	}
	defer closeConn()
	list, err := c.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: %w", err)
	}
	var errs []error
	for _, sb := range list.Items {
		if _, err := c.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop pod sandbox %s: %w", sb.Id, err))
		}
		if _, err := c.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod sandbox %s: %w", sb.Id, err))
		}
	}
	return errors.Join(errs...)
}
