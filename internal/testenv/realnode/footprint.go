package realnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// statePath holds the footprint of the running real node. A node whose test binary was killed
// leaves it behind, and the next Start undoes that node's remains before it starts its own.
const statePath = "/run/faultline-testenv/realnode.json"

// footprint is what the host looked like before a node started, and where the node keeps its
// files, so that exactly what the node changed is undone.
type footprint struct {
	Dir       string            `json:"dir"`
	CRISocket string            `json:"criSocket"`
	Sysctls   map[string]string `json:"sysctls"`
	Chains    map[string]bool   `json:"chains"` // "iptables/nat/KUBE-X"
	Mounts    map[string]bool   `json:"mounts"`
	Paths     map[string]bool   `json:"paths"` // which of fixedHostPaths and kubepodsCgroups existed
}

func recordFootprint(ctx context.Context, dir, criSocket string) (*footprint, error) {
	f := &footprint{Dir: dir, CRISocket: criSocket, Sysctls: map[string]string{}, Paths: map[string]bool{}}
	for _, s := range changedSysctls() {
		b, err := os.ReadFile("/proc/sys/" + s)
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", s, err)
		}
		f.Sysctls[s] = strings.TrimSpace(string(b))
	}
	var err error
	if f.Chains, err = nodeChains(ctx); err != nil {
		return nil, err
	}
	if f.Mounts, err = mountPoints(); err != nil {
		return nil, err
	}
	for _, p := range append(fixedHostPaths(), kubepodsCgroups()...) {
		if _, err := os.Lstat(p); err == nil {
			f.Paths[p] = true
		}
	}
	return f, nil
}

func (f *footprint) save() error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("save real node state: %w", err)
	}
	tmp := statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save real node state: %w", err)
	}
	if err := os.Rename(tmp, statePath); err != nil {
		return fmt.Errorf("save real node state: %w", err)
	}
	return nil
}

// loadFootprint returns the footprint a previous node left, or nil.
func loadFootprint() (*footprint, error) {
	b, err := os.ReadFile(statePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read real node state: %w", err)
	}
	f := &footprint{}
	if err := json.Unmarshal(b, f); err != nil || f.Dir == "" || !strings.HasPrefix(filepath.Base(f.Dir), dirPrefix) {
		return nil, fmt.Errorf("real node state %s is damaged (%v): remove it by hand after checking the host", statePath, err)
	}
	return f, nil
}

func removeState() error {
	if err := os.Remove(statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove real node state: %w", err)
	}
	return nil
}

// createdPodCgroups reports whether the node made the kubepods cgroups, so that every process in
// them is the node's.
func (f *footprint) createdPodCgroups() bool {
	for _, p := range kubepodsCgroups() {
		if f.Paths[p] {
			return false
		}
	}
	return true
}

// processes lists the node's processes: those naming its directory (kubelet, containerd, shims)
// and, when the node made the pod cgroups, the pods' processes.
func (f *footprint) processes() []int {
	inCgroup := ""
	if f.createdPodCgroups() {
		inCgroup = "/kubepods"
	}
	return processesMatching(f.Dir+"/", inCgroup)
}

// kill ends the processes a node whose test died left behind (shims and pods outlive containerd)
// and waits until they are gone.
func (f *footprint) kill(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return poll(ctx, 100*time.Millisecond, func(context.Context) error {
		pids := f.processes()
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if len(pids) > 0 {
			return fmt.Errorf("processes of the real node still running: %v", pids)
		}
		return nil
	})
}

// undo reverts what the node changed on the host; its processes must be gone.
func (f *footprint) undo(ctx context.Context) error {
	var errs []error
	// Pods' volumes (service-account tokens) stay mounted when the kubelet stops with pods running,
	// and so do the network namespaces of pods whose containerd was killed.
	if mounts, err := newMounts(f.Mounts, f.Dir); err != nil {
		errs = append(errs, err)
	} else {
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
			if strings.Contains(m, "/netns/cni-") {
				if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("remove %s: %w", m, err))
				}
			}
		}
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		if _, err := run(ctx, "ip", "link", "del", bridgeName); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, removeChains(ctx, f.Chains))
	for _, cg := range kubepodsCgroups() {
		if !f.Paths[cg] {
			errs = append(errs, removeCgroup(cg))
		}
	}
	for _, p := range fixedHostPaths() {
		if !f.Paths[p] {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
			}
		}
	}
	for s, v := range f.Sysctls {
		if err := os.WriteFile("/proc/sys/"+s, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", s, v, err))
		}
	}
	if err := os.RemoveAll(f.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove node dir: %w", err))
	}
	return errors.Join(errs...)
}

// leftovers lists what the node made that is still there.
func (f *footprint) leftovers(ctx context.Context) []string {
	var left []string
	if pids := f.processes(); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes: %v", pids))
	}
	if mounts, err := newMounts(f.Mounts, f.Dir); err != nil {
		left = append(left, err.Error())
	} else if len(mounts) > 0 {
		left = append(left, fmt.Sprintf("mounts: %v", mounts))
	}
	if _, err := net.InterfaceByName(bridgeName); err == nil {
		left = append(left, "bridge "+bridgeName)
	}
	if chains, err := nodeChains(ctx); err != nil {
		left = append(left, err.Error())
	} else {
		for c := range chains {
			if !f.Chains[c] {
				left = append(left, "iptables chain "+c)
			}
		}
	}
	for _, p := range append(kubepodsCgroups(), fixedHostPaths()...) {
		if _, err := os.Lstat(p); err == nil && !f.Paths[p] {
			left = append(left, p)
		}
	}
	if _, err := os.Lstat(f.Dir); err == nil {
		left = append(left, f.Dir)
	}
	for s, v := range f.Sysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil && strings.TrimSpace(string(b)) != v {
			left = append(left, fmt.Sprintf("sysctl %s=%s (was %s)", s, strings.TrimSpace(string(b)), v))
		}
	}
	slices.Sort(left)
	return left
}

// reapStale undoes the remains of a node whose test binary died without its cleanup. The host-wide
// lock must be held.
func reapStale(ctx context.Context, logf func(string, ...any)) error {
	f, err := loadFootprint()
	if err != nil || f == nil {
		return err
	}
	logf("real node: undoing the remains of a node whose test did not stop it (files in %s)", f.Dir)
	if err := f.kill(ctx); err != nil {
		return fmt.Errorf("remains of the real node in %s: %w", f.Dir, err)
	}
	if err := f.undo(ctx); err != nil {
		return fmt.Errorf("remains of the real node in %s: %w", f.Dir, err)
	}
	if left := f.leftovers(ctx); len(left) > 0 {
		return fmt.Errorf("remains of the real node in %s: still there: %s", f.Dir, strings.Join(left, "; "))
	}
	return removeState()
}
