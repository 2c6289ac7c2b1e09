package podnetns

import "testing"

// The verbose info of a sandbox, in the shapes the runtimes write it. containerd's is read from a
// real containerd in the agent's pod tests; CRI-O is not packaged for this test machine, so its
// two shapes are written here as its server marshals them (sandbox_status.go, createSandboxInfo):
// with an infra (pause) container, {image, pid, runtimeSpec}; with drop_infra_ctr (the default
// for years), a spoofed infra container and only {runtimeSpec}, no pid.
func TestVerboseInfoShapes(t *testing.T) {
	spec := `"runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/9f1c"}, {"type": "ipc"}]}}`
	for _, tc := range []struct {
		name, info string
		pid        int
		netns      string
	}{
		{"containerd", `{"pid": 4242, "processStatus": "running", ` + spec + `}`, 4242, "/var/run/netns/9f1c"},
		{"cri-o with a pause container", `{"image": "registry.k8s.io/pause:3.10", "pid": 4343, ` + spec + `}`, 4343, "/var/run/netns/9f1c"},
		{"cri-o without one", `{` + spec + `}`, 0, "/var/run/netns/9f1c"},
		{"host network", `{"pid": 77, "runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}]}}}`, 77, ""},
		{"not JSON", `runtime says no`, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pid, netns := verboseInfo(map[string]string{"info": tc.info})
			if pid != tc.pid || netns != tc.netns {
				t.Fatalf("verboseInfo = %d, %q; want %d, %q", pid, netns, tc.pid, tc.netns)
			}
		})
	}
}
