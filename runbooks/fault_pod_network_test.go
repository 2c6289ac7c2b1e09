package runbooks

import (
	"strings"
	"testing"
	"time"
)

const podNetworkRunbook = `apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: pods}
environment:
  name: golden
  type: golden-copy
  kubernetes:
    clusterID: 0b6a4b4e-0000-4000-8000-000000000000
    agent: {tls: {caFile: ca.pem, certFile: run.pem, keyFile: run-key.pem}}
experiments:
  - name: cut
    duration: 10s
    faults:
      - podBandwidth: {namespaces: [shop], rate: 1mbit}
      - podLoss: {namespaces: [shop], probability: 0.5, lease: 30s, peers: {cidrs: [10.0.0.1]}}
`

// The defaults a runbook leaves out: the agents' namespace and port, the lease, the interface.
func TestPodNetworkDefaults(t *testing.T) {
	rb, err := Parse("pods.yaml", []byte(podNetworkRunbook))
	if err != nil {
		t.Fatal(err)
	}
	a := rb.Environment.Kubernetes.Agent
	if a.NamespaceOrDefault() != "faultline" || a.PortOrDefault() != 7470 {
		t.Errorf("agent defaults = %s:%d", a.NamespaceOrDefault(), a.PortOrDefault())
	}
	f := rb.Experiments[0].Faults
	if bw := f[0].PodBandwidth; bw.LeaseOrDefault() != 10*time.Second || bw.InterfaceOrDefault() != "eth0" || f[0].Kind() != "pod-bandwidth" {
		t.Errorf("podBandwidth defaults: lease %s, interface %s, kind %s", bw.LeaseOrDefault(), bw.InterfaceOrDefault(), f[0].Kind())
	}
	if l := f[1].PodLoss; l.LeaseOrDefault() != 30*time.Second || l.Peers.CIDRs[0] != "10.0.0.1" {
		t.Errorf("podLoss: lease %s, peers %v", l.LeaseOrDefault(), l.Peers)
	}
	if !rb.UsesKubernetes() {
		t.Error("pod network faults must count as Kubernetes faults (the cluster must be pinned)")
	}
}

// podBandwidth takes no peers, direction or ports: it limits an interface.
func TestPodBandwidthRejectsPeers(t *testing.T) {
	bad := strings.Replace(podNetworkRunbook, "rate: 1mbit}", "rate: 1mbit, peers: {cidrs: [10.0.0.1]}}", 1)
	_, err := Parse("pods.yaml", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), "peers") {
		t.Fatalf("Parse = %v, want an unknown-field error for podBandwidth.peers", err)
	}
}
