package realnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockPath serialises real nodes host-wide: the kubelet uses fixed host paths whatever its root
// directory (/var/lib/kubelet/device-plugins, /var/log/containers), so two would clash.
const lockPath = "/run/faultline-testenv/realnode.lock"

// lockHost takes the host-wide real-node lock, waiting for ctx. The kernel drops it when the
// process dies, so a crashed test never blocks the next one.
func lockHost(ctx context.Context, logf func(string, ...any)) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
		return nil, fmt.Errorf("real node lock: %w", err)
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("real node lock: %w", err)
	}
	waiting := false
	err = poll(ctx, 200*time.Millisecond, func(context.Context) error {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if !waiting {
				logf("waiting for another test's real node to stop (lock %s)", lockPath)
				waiting = true
			}
			return errors.New("another real node runs on this host")
		}
		if err != nil {
			return permanentError{err}
		}
		return nil
	})
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("real node lock %s: %w", lockPath, err)
	}
	return f, nil
}

// changedSysctls are the host settings the kubelet (kernel tunables) and the CNI bridge
// (forwarding) change.
func changedSysctls() []string {
	return []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", "net/ipv4/ip_forward"}
}

// fixedHostPaths are the paths the kubelet, containerd's shims and the CNI plugins create whatever
// their configuration says.
func fixedHostPaths() []string {
	return []string{"/var/lib/kubelet", "/var/lib/cni", "/run/containerd", "/var/log/containers"}
}

// nodeChains lists the KUBE-* and CNI-* chains of the host as "tool/table/chain".
func nodeChains(ctx context.Context) (map[string]bool, error) {
	chains := map[string]bool{}
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			out, err := run(ctx, tool, "-w", "5", "-t", table, "-S")
			if err != nil {
				if tool == "ip6tables" {
					continue // a host without IPv6 tables
				}
				return nil, fmt.Errorf("list iptables chains: %w", err)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" && ownChain(f[1]) {
					chains[tool+"/"+table+"/"+f[1]] = true
				}
			}
		}
	}
	return chains, nil
}

func ownChain(name string) bool {
	return strings.HasPrefix(name, "KUBE-") || strings.HasPrefix(name, "CNI-")
}

// removeChains deletes the chains that are not in before, and the rules that jump to them.
func removeChains(ctx context.Context, before map[string]bool) error {
	now, err := nodeChains(ctx)
	if err != nil {
		return err
	}
	var errs []error
	byTable := map[string][]string{}
	for k := range now {
		if !before[k] {
			i := strings.LastIndexByte(k, '/')
			byTable[k[:i]] = append(byTable[k[:i]], k[i+1:])
		}
	}
	for tt, chains := range byTable {
		tool, table, _ := strings.Cut(tt, "/")
		if err := dropJumps(ctx, tool, table, chains); err != nil {
			errs = append(errs, err)
		}
		for _, c := range chains {
			if _, err := run(ctx, tool, "-w", "5", "-t", table, "-F", c); err != nil {
				errs = append(errs, err)
			}
		}
		for _, c := range chains {
			if _, err := run(ctx, tool, "-w", "5", "-t", table, "-X", c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// dropJumps deletes, by rule number, every rule of the table whose target is one of chains.
func dropJumps(ctx context.Context, tool, table string, chains []string) error {
	out, err := run(ctx, tool, "-w", "5", "-t", table, "-S")
	if err != nil {
		return err
	}
	var all []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && (f[0] == "-N" || f[0] == "-P") {
			all = append(all, f[1])
		}
	}
	for _, c := range all {
		listing, err := run(ctx, tool, "-w", "5", "-t", table, "-L", c, "-n", "--line-numbers")
		if err != nil {
			return err
		}
		var nums []int
		for _, line := range strings.Split(string(listing), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && slices.Contains(chains, f[1]) {
				if n, err := strconv.Atoi(f[0]); err == nil {
					nums = append(nums, n)
				}
			}
		}
		sort.Sort(sort.Reverse(sort.IntSlice(nums)))
		for _, n := range nums {
			if _, err := run(ctx, tool, "-w", "5", "-t", table, "-D", c, strconv.Itoa(n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// mountPoints lists the host's mount points.
func mountPoints() (map[string]bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	defer f.Close()
	mounts := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			mounts[unescapeMount(fields[4])] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	return mounts, nil
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// newMounts lists the mounts made since before that belong to the node: under dir, pods' network
// namespaces, and containerd's fixed run directory; deepest first.
func newMounts(before map[string]bool, dir string) ([]string, error) {
	now, err := mountPoints()
	if err != nil {
		return nil, err
	}
	var out []string
	for m := range now {
		if before[m] {
			continue
		}
		if strings.HasPrefix(m, dir+"/") || strings.HasPrefix(m, "/run/netns/cni-") ||
			strings.HasPrefix(m, "/var/run/netns/cni-") || strings.HasPrefix(m, "/run/containerd/") {
			out = append(out, m)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out, nil
}

// kubepodsCgroups lists where the kubelet puts its pod cgroups (cgroup v1 hierarchies and v2).
func kubepodsCgroups() []string {
	paths := []string{"/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/unified/kubepods"}
	if dirs, err := filepath.Glob("/sys/fs/cgroup/*/kubepods"); err == nil {
		paths = append(paths, dirs...)
	}
	slices.Sort(paths)
	return slices.Compact(paths)
}

// removeCgroup removes a cgroup directory tree, deepest first (cgroup files cannot be unlinked).
func removeCgroup(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove cgroup %s: %w", root, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
		}
	}
	return nil
}

// processesMatching lists the pids (other than this process) whose command line contains s, or,
// when inCgroup is set, whose cgroup path contains inCgroup.
func processesMatching(s, inCgroup string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if s != "" {
			if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil &&
				strings.Contains(string(b), s) {
				pids = append(pids, pid)
				continue
			}
		}
		if inCgroup != "" {
			if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); err == nil &&
				strings.Contains(string(b), inCgroup) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// nodeIP is the address the node registers as its InternalIP: the first IPv4 address of an
// interface that is up, not loopback and not one the pods' bridge made. The kubelet refuses
// loopback addresses.
func nodeIP(bridge string, podNet netip.Prefix) (netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("node IP: %w", err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 || i.Name == bridge || strings.HasPrefix(i.Name, "veth") {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() && !podNet.Contains(ip.Unmap()) {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, errors.New("node IP: no interface is up with an IPv4 address (the kubelet needs a non-loopback node address)")
}
