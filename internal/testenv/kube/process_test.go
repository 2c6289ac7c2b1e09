package kube

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestListensOn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if ok, err := listensOn(os.Getpid(), port); err != nil || !ok {
		t.Fatalf("listensOn(self, %d) = %v, %v; want true", port, ok, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := listensOn(os.Getpid(), port); err != nil || ok {
		t.Fatalf("listensOn(self, %d) after close = %v, %v; want false", port, ok, err)
	}
}

// TestRunRetriesPortConflict starts etcd on a port that is taken and checks that run starts it
// again on free ports.
func TestRunRetriesPortConflict(t *testing.T) {
	binDir := DefaultBinDir()
	if missing := missingParts(binDir); len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kubernetes test binaries not built: run scripts/testenv-kube (missing %v)", missing)
		}
		t.Skipf("kubernetes test binaries not built: run scripts/testenv-kube (missing %v)", missing)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	c := &Cluster{t: t, Dir: t.TempDir()}
	t.Cleanup(c.stop)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	health := newHealthClient()
	ports, err := c.run(ctx, component{
		name: "etcd", bin: filepath.Join(binDir, "etcd"), ports: 2,
		args: func(p []int, attempt int) []string {
			if attempt == 1 {
				p[0] = takenPort
			}
			client, peer := fmt.Sprintf("http://127.0.0.1:%d", p[0]), fmt.Sprintf("http://127.0.0.1:%d", p[1])
			return []string{"--data-dir", filepath.Join(c.Dir, fmt.Sprint("data-", attempt)),
				"--listen-client-urls", client, "--advertise-client-urls", client,
				"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
				"--initial-cluster", "default=" + peer}
		},
		ready: func(ctx context.Context, p []int) error {
			_, err := health.get(ctx, fmt.Sprintf("http://127.0.0.1:%d/health", p[0]), "")
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ports[0] == takenPort {
		t.Fatalf("etcd reported ready on the taken port %d", takenPort)
	}
	c.mu.Lock()
	n := len(c.procs)
	c.mu.Unlock()
	if n != 2 {
		t.Fatalf("started etcd %d times, want 2 (one conflict, one retry)", n)
	}
}
