package podnetns

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fakeProc writes the files Proc reads for each pid: its cgroup text and a stat line whose
// start time (field 22) is given. The real layout is exercised against a real kubelet in the
// agent's pod tests; this covers the cgroup name forms that node does not use.
func fakeProc(t *testing.T, procs map[int]struct {
	cgroup string
	start  uint64
}) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(pid) + " (pause (x)) S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 " + strconv.FormatUint(p.start, 10) + " 1 1\n"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(p.cgroup), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestProcFindsTheOldestProcessOfThePod(t *testing.T) {
	const uid = "0c1d2e3f-1111-2222-3333-444455556666"
	type proc = struct {
		cgroup string
		start  uint64
	}
	root := fakeProc(t, map[int]proc{
		// cgroupfs driver, v1: the app container started after the pause container.
		100: {"12:pids:/kubepods/besteffort/pod" + uid + "/abc\n1:name=systemd:/kubepods/besteffort/pod" + uid + "/abc\n", 500},
		90:  {"12:pids:/kubepods/besteffort/pod" + uid + "/pause\n", 400},
		// Another pod whose UID has this one's as a prefix, started earlier.
		80: {"0::/kubepods/pod" + uid + "7/x\n", 10},
		// The host.
		1: {"0::/init.scope\n", 1},
	})
	p, err := (&Proc{Root: root}).Resolve(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	if p.PausePID != 90 || p.Netns != filepath.Join(root, "90", "ns", "net") || p.Via != "proc" {
		t.Errorf("resolved %+v, want pid 90", p)
	}

	// systemd driver, cgroup v2: pod<uid with _>.slice.
	sys := fakeProc(t, map[int]proc{
		300: {"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c1d2e3f_1111_2222_3333_444455556666.slice/cri-containerd-1.scope\n", 7},
		301: {"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c1d2e3f_1111_2222_3333_444455556666.slice/cri-containerd-2.scope\n", 9},
	})
	if p, err := (&Proc{Root: sys}).Resolve(context.Background(), uid); err != nil || p.PausePID != 300 {
		t.Errorf("systemd slice: %+v, %v; want pid 300", p, err)
	}

	if _, err := (&Proc{Root: root}).Resolve(context.Background(), "ffffffff-0000-0000-0000-000000000000"); !errors.Is(err, ErrNotOnNode) {
		t.Errorf("unknown uid: %v, want ErrNotOnNode", err)
	}
	if _, err := (&Proc{Root: root}).Resolve(context.Background(), "../1"); err == nil {
		t.Error("a uid with a slash was accepted")
	}
}

func TestVerboseInfo(t *testing.T) {
	pid, netns := verboseInfo(map[string]string{"info": `{"pid": 4242, "runtimeSpec": {"linux": {"namespaces": [
		{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1234"}, {"type": "ipc"}]}}}`})
	if pid != 4242 || netns != "/var/run/netns/cni-1234" {
		t.Errorf("verboseInfo = %d, %q", pid, netns)
	}
	if pid, netns := verboseInfo(map[string]string{"info": "not json"}); pid != 0 || netns != "" {
		t.Errorf("bad info = %d, %q", pid, netns)
	}
}
