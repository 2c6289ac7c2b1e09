package pod

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/injectors"
	kinj "github.com/faultline-dev/faultline/injectors/kubernetes"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// agentLabel selects the agent pods.
const agentLabel = "app.kubernetes.io/name=" + runbooks.AgentNameLabel

// resolvePeers turns the peers of a fault into addresses: CIDRs as written, pods and a Service's
// ready endpoints as their IPs now. Peers given but resolving to nothing are refused: an empty
// peer list would mean every peer.
func resolvePeers(ctx context.Context, cs k8s.Interface, p *runbooks.PodPeers) ([]string, error) {
	if p == nil {
		return nil, nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, c := range p.CIDRs {
		pr, err := runbooks.ParsePeer(c)
		if err != nil {
			return nil, err
		}
		add(pr.String())
	}
	if q := p.Pods; q != nil {
		l, err := cs.CoreV1().Pods(q.Namespace).List(ctx, metav1.ListOptions{LabelSelector: q.LabelSelector})
		if err != nil {
			return nil, kinj.Forbidden(fmt.Errorf("list peer pods %s in %s: %w", q.LabelSelector, q.Namespace, err))
		}
		n := 0
		for i := range l.Items {
			o := &l.Items[i]
			if o.DeletionTimestamp != nil || o.Status.Phase == corev1.PodSucceeded || o.Status.Phase == corev1.PodFailed {
				continue
			}
			for _, ip := range podIPs(o) {
				add(ip)
				n++
			}
		}
		if n == 0 {
			return nil, policy.Refusef("peers.pods", "no live pod with an IP matches %s in namespace %s", q.LabelSelector, q.Namespace)
		}
	}
	if s := p.Service; s != nil {
		ips, err := serviceEndpoints(ctx, cs, s.Namespace, s.Name)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			add(ip)
		}
	}
	return out, nil
}

// podIPs are a pod's IPs as /32 or /128 prefixes.
func podIPs(o *corev1.Pod) []string {
	var out []string
	for _, a := range o.Status.PodIPs {
		if ip, err := netip.ParseAddr(a.IP); err == nil {
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()).String())
		}
	}
	if len(out) == 0 && o.Status.PodIP != "" {
		if ip, err := netip.ParseAddr(o.Status.PodIP); err == nil {
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()).String())
		}
	}
	return out
}

// serviceEndpoints lists the ready addresses of a Service's EndpointSlices.
func serviceEndpoints(ctx context.Context, cs k8s.Interface, ns, name string) ([]string, error) {
	if _, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, policy.Refusef("peers.service", "Service %s/%s does not exist", ns, name)
		}
		return nil, kinj.Forbidden(fmt.Errorf("get Service %s/%s: %w", ns, name, err))
	}
	l, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return nil, kinj.Forbidden(fmt.Errorf("list EndpointSlices of Service %s/%s: %w", ns, name, err))
	}
	var out []string
	for _, sl := range l.Items {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out = append(out, netip.PrefixFrom(ip, ip.BitLen()).String())
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, policy.Refusef("peers.service", "Service %s/%s has no ready endpoints: there is no peer to cut off (is its selector right, are its pods ready?)", ns, name)
	}
	sort.Strings(out)
	return out, nil
}

// agentsByNode maps each node to the address of the agent running on it.
func agentsByNode(ctx context.Context, cs k8s.Interface, ns string, port int) (map[string]string, error) {
	l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: agentLabel})
	if err != nil {
		return nil, kinj.Forbidden(fmt.Errorf("list faultline agents (%s) in %s: %w", agentLabel, ns, err))
	}
	out := map[string]string{}
	for i := range l.Items {
		o := &l.Items[i]
		ip := o.Status.PodIP
		if ip == "" {
			ip = o.Status.HostIP
		}
		if o.DeletionTimestamp != nil || o.Status.Phase != corev1.PodRunning || ip == "" || o.Spec.NodeName == "" {
			continue
		}
		out[o.Spec.NodeName] = "https://" + net.JoinHostPort(ip, strconv.Itoa(port))
	}
	return out, nil
}

// agentOn finds the agent of one node, for a revert whose recorded address no longer answers.
func agentOn(ctx context.Context, env injectors.Env, ns string, port int, node string) (string, bool) {
	cs, err := env.Kube.Clientset()
	if err != nil {
		return "", false
	}
	m, err := agentsByNode(ctx, cs, ns, port)
	if err != nil {
		return "", false
	}
	a, ok := m[node]
	return a, ok
}
