package network

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Target is a resolved network namespace, in the form ledger records keep it: a revert from
// another process, after a crash, finds exactly the namespace the fault was applied in, or learns
// that it is gone. The zero Target is the namespace the calling process runs in, unchecked.
type Target struct {
	// Label names the namespace for people: its ip-netns name, its path, or "host".
	Label string `json:"netns"`
	// Path is the namespace file; "" is the namespace faultline itself runs in.
	Path string `json:"netnsPath,omitempty"`
	// ID is "dev:inode" of the namespace when the fault was prepared. A revert compares it with
	// what Path names now: a different namespace means the original is gone, and its rules with it.
	ID string `json:"netnsID"`
	// Aliases are other files naming the same namespace, found in the netns directory when the
	// fault was prepared by a path such as /proc/PID/ns/net: if that process exits while the
	// namespace lives on (a bind mount, a pause container), a revert still reaches it.
	Aliases []string `json:"netnsAliases,omitempty"`
}

// ResolveTarget turns a runbook's netns/netnsPath into a namespace that exists, or refuses
// (policy.RefusedError, rule "netns"); both empty is the namespace faultline runs in. Of the
// options only NetnsDir matters: it is where names are looked up, and where aliases are searched.
func ResolveTarget(name, path string, opts ...Option) (Target, error) {
	return resolveTarget(newConfig(opts), name, path)
}

// resolveTarget turns a runbook's netns/netnsPath into a namespace that exists, or refuses.
func resolveTarget(cfg *config, name, path string) (Target, error) {
	switch {
	case name != "":
		path = filepath.Join(cfg.netnsDir, name)
	case path == "":
		id, err := nsID(selfNetns)
		if err != nil {
			return Target{}, fmt.Errorf("identify own network namespace: %w", err)
		}
		return Target{Label: "host", ID: id}, nil
	default:
		name = path
	}
	id, err := nsID(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Target{}, policy.Refusef("netns", "network namespace %q does not exist (%s not found; see `ip netns list`)", name, path)
	}
	if err != nil {
		return Target{}, policy.Refusef("netns", "network namespace %q: %v", name, err)
	}
	t := Target{Label: name, Path: path, ID: id}
	if filepath.Dir(path) != filepath.Clean(cfg.netnsDir) {
		entries, _ := os.ReadDir(cfg.netnsDir) // best effort: aliases only make reverts more robust
		for _, e := range entries {
			alias := filepath.Join(cfg.netnsDir, e.Name())
			if aid, err := nsID(alias); err == nil && aid == id {
				t.Aliases = append(t.Aliases, alias)
			}
		}
	}
	return t, nil
}

const selfNetns = "/proc/self/ns/net"

// nsID identifies the network namespace file at path, failing for anything that is not one.
func nsID(path string) (string, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return "", &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return "", fmt.Errorf("%s is not a namespace file (an nsfs bind mount or /proc/PID/ns/net)", path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err == nil && typ != unix.CLONE_NEWNET {
		return "", fmt.Errorf("%s is a namespace, but not a network namespace", path)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

// Locate finds the namespace the target named when it was prepared. It returns the target with
// Path set to a file that still names that namespace (Path itself or an alias), or gone = true
// when none does: rules and qdiscs die with their namespace, so there is nothing left to revert.
// For the host namespace a different identity is an error: the revert is running somewhere other
// than where the fault was applied.
func (t Target) Locate() (found Target, gone bool, err error) {
	if t.Path == "" {
		id, err := nsID(selfNetns)
		if err != nil {
			return t, false, fmt.Errorf("identify own network namespace: %w", err)
		}
		if t.ID != "" && id != t.ID {
			return t, false, fmt.Errorf("the fault was applied in network namespace %s but this process runs in %s: revert it from the namespace the run used", t.ID, id)
		}
		return t, false, nil
	}
	for _, p := range append([]string{t.Path}, t.Aliases...) {
		id, err := nsID(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return t, false, err
		}
		if t.ID == "" || id == t.ID {
			t.Path = p
			return t, false, nil
		}
	}
	return t, true, nil
}

// Do runs fn with the calling OS thread inside the target namespace. Sockets fn opens stay in the
// namespace; goroutines fn starts do not run in it.
//
// Why a thread and not nsenter / `ip netns exec`: go-iptables and the iptables-restore calls here
// exec the iptables binaries through os/exec, which forks from the calling OS thread, so a child
// started from a thread that has setns'd into a namespace runs in that namespace (the technique
// CNI plugins use). This needs no extra binary, works the same for ip-netns names and for
// /proc/PID/ns/net paths (ip netns exec only takes names, and also remounts /sys), and keeps
// the mount namespace, hence the xtables lock file, shared with every other iptables user.
// The Go runtime never starts new threads from a locked thread that may be in another
// namespace, so the namespace does not leak to other goroutines. If the thread cannot be
// returned to its own namespace it stays locked and the runtime destroys it when the goroutine
// exits.
func (t Target) Do(fn func() error) error {
	if t.Path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		ns, err := vnetns.GetFromPath(t.Path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open network namespace %s: %w", t.Path, err)
			return
		}
		defer ns.Close()
		if err := vnetns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", t.Path, err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", t.Path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Netlink returns a netlink handle bound to the target namespace.
func (t Target) Netlink() (*netlink.Handle, error) {
	if t.Path == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		return h, nil
	}
	ns, err := vnetns.GetFromPath(t.Path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", t.Path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", t.Label, err)
	}
	return h, nil
}

// String names the namespace for people, as "netns <label>".
func (t Target) String() string {
	if t.Label == "" {
		return "netns host"
	}
	return "netns " + t.Label
}

// run executes a command (inside the target namespace when called from t.Do) with stdin, and
// returns its output; errors carry the command's stderr.
func run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// RequireNetAdmin refuses unless the process has CAP_NET_ADMIN in its effective set (bit 12 of
// CapEff in /proc/self/status), which every iptables and qdisc change needs.
func RequireNetAdmin() error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return fmt.Errorf("parse CapEff %q: %w", v, err)
		}
		if caps&(1<<unix.CAP_NET_ADMIN) == 0 {
			return policy.Refusef("capability CAP_NET_ADMIN", "network faults change iptables rules and qdiscs, which needs CAP_NET_ADMIN; run faultline as root or grant it the capability (effective set is %#x)", caps)
		}
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	return errors.New("read capabilities: no CapEff line in /proc/self/status")
}

// networkTargetOf returns the NetworkTarget of a rule-based fault spec.
func networkTargetOf(spec any) (*runbooks.NetworkTarget, bool) {
	switch s := spec.(type) {
	case *runbooks.Partition:
		return &s.NetworkTarget, true
	case *runbooks.Reject:
		return &s.NetworkTarget, true
	case *runbooks.Loss:
		return &s.NetworkTarget, true
	case *runbooks.ShardIsolation:
		return &s.NetworkTarget, true
	}
	return nil, false
}
