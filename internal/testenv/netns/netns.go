//go:build linux

package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace this package creates.
const Prefix = "fl-test-"

// RunDir is where `ip netns` keeps named namespaces.
const RunDir = "/var/run/netns"

// Require skips the test unless it runs as root with ip(8) and every extra tool named (e.g.
// "iptables", "iptables-save") on PATH. Under CI=true a missing tool fails the test instead, since
// CI is expected to install them (apt-get install iproute2 iptables).
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces need Linux")
	}
	if os.Geteuid() != 0 {
		// Not root is not an installable part: skip even under CI.
		t.Skip("network namespace tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run as root to include them")
	}
	var missing []string
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("network namespace tests need %s on PATH (apt-get install iproute2 iptables)", strings.Join(missing, ", "))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// NS is a network namespace created for one test.
type NS struct {
	// Name is the namespace's name for `ip netns` (and for a runbook's netns field).
	Name string
	// Path is its bind mount, /var/run/netns/NAME (for a runbook's netnsPath field).
	Path string
	t    testing.TB
}

// New creates an empty namespace with its loopback up, deleted at the end of the test.
func New(t testing.TB) *NS {
	t.Helper()
	Require(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("netns: random name: %v", err)
	}
	name := Prefix + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
		t.Fatalf("netns: %v", err)
	}
	n := &NS{Name: name, Path: filepath.Join(RunDir, name), t: t}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := run(ctx, "ip", "netns", "del", name); err != nil {
			t.Errorf("netns cleanup: %v", err)
		}
	})
	if _, err := run(ctx, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("netns: %v", err)
	}
	return n
}

// Do runs fn on an OS thread that has entered the namespace and returns fn's error. fn must not
// rely on goroutines it starts being in the namespace; file descriptors it creates (sockets) stay
// in the namespace.
func (n *NS) Do(fn func() error) error {
	return DoPath(n.Path, fn)
}

// DoPath is Do for any namespace path (e.g. /proc/PID/ns/net).
func DoPath(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread on the error paths below: if the thread may be in a foreign
		// namespace, exiting the goroutine while locked makes the runtime destroy the thread.
		orig, err := vnetns.Get()
		if err != nil {
			errc <- fmt.Errorf("netns: current namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := vnetns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: open %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := vnetns.Set(target); err != nil {
			errc <- fmt.Errorf("netns: enter %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("netns: leave %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenTCP opens a TCP listener inside the namespace, e.g. ListenTCP(ctx, "10.200.7.2:0"). It is
// closed at the end of the test.
func (n *NS) ListenTCP(ctx context.Context, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s in %s: %w", addr, n.Name, err)
	}
	n.t.Cleanup(func() { _ = ln.Close() })
	return ln, nil
}

// ListenUDP opens a UDP socket bound inside the namespace. It is closed at the end of the test.
func (n *NS) ListenUDP(ctx context.Context, addr string) (*net.UDPConn, error) {
	var pc net.PacketConn
	err := n.Do(func() error {
		var err error
		pc, err = (&net.ListenConfig{}).ListenPacket(ctx, "udp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen udp %s in %s: %w", addr, n.Name, err)
	}
	n.t.Cleanup(func() { _ = pc.Close() })
	return pc.(*net.UDPConn), nil
}

// Dial connects from inside the namespace (network "tcp", "tcp6", "udp", ...). The connection is
// closed at the end of the test if the caller has not closed it.
func (n *NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from %s: %w", network, addr, n.Name, err)
	}
	n.t.Cleanup(func() { _ = c.Close() })
	return c, nil
}

// Exec runs a command inside the namespace and returns its standard output; a failure carries
// its standard error. The command is forked from a thread inside the namespace (no `ip netns
// exec`, so the mount namespace and /sys are the caller's).
func (n *NS) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	var out []byte
	err := n.Do(func() error {
		var err error
		out, err = run(ctx, name, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("in netns %s: %w", n.Name, err)
	}
	return out, nil
}

// Netlink returns a netlink handle bound to the namespace (for links, addresses, qdiscs), closed
// at the end of the test.
func (n *NS) Netlink() (*netlink.Handle, error) {
	h, err := vnetns.GetFromPath(n.Path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", n.Path, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n.Name, err)
	}
	n.t.Cleanup(nh.Close)
	return nh, nil
}

// Link is a veth pair between two namespaces.
type Link struct {
	A, B *NS
	// AIf and BIf are the interface names on each side (unique within their namespace).
	AIf, BIf string
	// Subnet is X in 10.200.X.0/24 and fd00:200:X::/64.
	Subnet int
	// A4, B4, A6, B6 are the addresses of each side.
	A4, B4, A6, B6 netip.Addr
}

// NewPair creates two namespaces joined by a veth pair with both IPv4 and IPv6 addresses, up and
// ready for traffic.
func NewPair(t testing.TB) *Link {
	t.Helper()
	return Connect(t, New(t), New(t))
}

// Connect joins two namespaces with a new veth pair on a fresh subnet (a namespace may take part in
// several links). It returns once both ends are up and their addresses usable.
func Connect(t testing.TB, a, b *NS) *Link {
	t.Helper()
	x, release, err := claimSubnet()
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(release)
	l := &Link{
		A: a, B: b, Subnet: x,
		AIf: fmt.Sprintf("fl%da", x), BIf: fmt.Sprintf("fl%db", x),
		A4: netip.MustParseAddr(fmt.Sprintf("10.200.%d.1", x)),
		B4: netip.MustParseAddr(fmt.Sprintf("10.200.%d.2", x)),
		A6: netip.MustParseAddr(fmt.Sprintf("fd00:200:%d::1", x)),
		B6: netip.MustParseAddr(fmt.Sprintf("fd00:200:%d::2", x)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Both ends are created directly in their namespaces: nothing appears in the host's.
	cmds := [][]string{
		{"ip", "link", "add", l.AIf, "netns", a.Name, "type", "veth", "peer", "name", l.BIf, "netns", b.Name},
		{"ip", "-n", a.Name, "addr", "add", l.A4.String() + "/24", "dev", l.AIf},
		{"ip", "-n", b.Name, "addr", "add", l.B4.String() + "/24", "dev", l.BIf},
		// nodad: the address is usable at once instead of "tentative" for a second or two.
		{"ip", "-n", a.Name, "-6", "addr", "add", l.A6.String() + "/64", "dev", l.AIf, "nodad"},
		{"ip", "-n", b.Name, "-6", "addr", "add", l.B6.String() + "/64", "dev", l.BIf, "nodad"},
		{"ip", "-n", a.Name, "link", "set", l.AIf, "up"},
		{"ip", "-n", b.Name, "link", "set", l.BIf, "up"},
	}
	for _, c := range cmds {
		if _, err := run(ctx, c[0], c[1:]...); err != nil {
			t.Fatalf("netns: %v", err)
		}
	}
	if err := l.waitUp(ctx); err != nil {
		t.Fatalf("netns: %v", err)
	}
	return l
}

// waitUp polls until both ends report carrier (operstate up).
func (l *Link) waitUp(ctx context.Context) error {
	ha, err := l.A.Netlink()
	if err != nil {
		return err
	}
	hb, err := l.B.Netlink()
	if err != nil {
		return err
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		la, errA := ha.LinkByName(l.AIf)
		lb, errB := hb.LinkByName(l.BIf)
		if errA == nil && errB == nil && la.Attrs().OperState == netlink.OperUp && lb.Attrs().OperState == netlink.OperUp {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("veth %s/%s not up: %w (errors: %v, %v)", l.AIf, l.BIf, ctx.Err(), errA, errB)
		case <-tick.C:
		}
	}
}

// subnetDir holds one lock file per subnet number in use, naming the owning process.
const subnetDir = "/run/faultline-testenv/subnets"

// claimSubnet reserves a subnet number no other live process holds. Files left by dead processes
// are reclaimed.
func claimSubnet() (int, func(), error) {
	if err := os.MkdirAll(subnetDir, 0o700); err != nil {
		return 0, nil, fmt.Errorf("subnet locks: %w", err)
	}
	var b [1]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, nil, fmt.Errorf("subnet locks: %w", err)
	}
	start := int(b[0])
	for i := range 254 {
		x := (start+i)%254 + 1
		path := filepath.Join(subnetDir, strconv.Itoa(x))
		for attempt := 0; attempt < 2; attempt++ {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err == nil {
				_, werr := fmt.Fprintf(f, "%d\n", os.Getpid())
				if cerr := f.Close(); werr == nil {
					werr = cerr
				}
				if werr != nil {
					_ = os.Remove(path)
					return 0, nil, fmt.Errorf("subnet lock %s: %w", path, werr)
				}
				return x, func() { _ = os.Remove(path) }, nil
			}
			if !errors.Is(err, os.ErrExist) || !stale(path) {
				break
			}
			_ = os.Remove(path) // the owner died: take the number over
		}
	}
	return 0, nil, fmt.Errorf("all 254 test subnets 10.200.X.0/24 are in use (locks in %s)", subnetDir)
}

// stale reports whether a subnet lock file belongs to a process that no longer exists.
func stale(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return false // being written right now, or not ours to judge
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// run executes a command and returns its stdout; the error names the command and its stderr.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
