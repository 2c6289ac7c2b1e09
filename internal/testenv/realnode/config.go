package realnode

import (
	"fmt"
	"net/netip"
	"strconv"
)

// containerdConfig keeps every path of containerd's inside dir, except what containerd 1.6 fixes
// (shim sockets in /run/containerd/s, pods' network namespaces in /var/run/netns).
func containerdConfig(dir, sock string, streamPort int) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
oom_score = 0

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  stream_server_address = "127.0.0.1"
  stream_server_port = %[7]q
  enable_cdi = false
  # runc cannot give the sandbox the oom_score_adj of -998 where CAP_SYS_RESOURCE is not in the
  # capability bounding set (containers, some VMs); every sandbox would then fail with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[8]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[9]q
    conf_dir = %[10]q
`, dir+"/containerd-root", dir+"/containerd-state", sock, sock+".ttrpc", dir+"/opt",
		PauseImage, strconv.Itoa(streamPort), dir+"/runc", cniBinDir, dir+"/cni/net.d")
}

// cniConfig is a bridge network with host-local addresses and NAT to the outside, and portmap for
// hostPort.
func cniConfig(network, bridge, subnet, ipamDir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, network, bridge, subnet, ipamDir)
}

// kubeletConfig is the kubelet's configuration: the cgroupfs driver (no systemd needed), cgroup v1
// accepted (v1.35 refuses it by default), no swap check, client certificates of the cluster CA
// accepted, nothing bound beyond the node IP, image GC and disk eviction effectively off (images are
// imported, never pulled).
func kubeletConfig(caFile, criSock, logsDir string, addr netip.Addr, port, healthzPort int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
readOnlyPort: 0
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
oomScoreAdj: 0
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %q}
authorization: {mode: AlwaysAllow}
podLogsDir: %q
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%"}
rotateCertificates: false
serverTLSBootstrap: false
`, addr, port, healthzPort, criSock, criSock, caFile, logsDir)
}
