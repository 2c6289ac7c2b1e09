package podnetns

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/internal/procfs"
)

// Proc finds a pod's sandbox process in the process table: every container of a pod runs in a
// cgroup whose path names the pod's UID, and the sandbox (pause) process is the oldest of them.
type Proc struct {
	// Root is the proc filesystem, "/proc" unless a test says otherwise.
	Root string
}

// Resolve finds the sandbox process of the pod with this UID.
func (p *Proc) Resolve(ctx context.Context, uid string) (Pod, error) {
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	if uid == "" || strings.ContainsAny(uid, "/\n") {
		return Pod{}, fmt.Errorf("pod uid %q is not a UID", uid)
	}
	// cgroupfs names the pod's cgroup pod<uid>, the systemd driver pod<uid with _ for ->.slice.
	forms := []string{"pod" + uid, "pod" + strings.ReplaceAll(uid, "-", "_")}
	ents, err := os.ReadDir(root)
	if err != nil {
		return Pod{}, fmt.Errorf("read %s: %w", root, err)
	}
	best, bestStart := 0, uint64(0)
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return Pod{}, err
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "cgroup"))
		if err != nil || !inPodCgroup(string(b), forms) {
			continue // exited meanwhile, or another pod's
		}
		st, err := procfs.ReadStat(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue
		}
		if best == 0 || st.Start < bestStart || (st.Start == bestStart && pid < best) {
			best, bestStart = pid, st.Start
		}
	}
	if best == 0 {
		return Pod{}, fmt.Errorf("%w: no process in %s runs in a cgroup of pod uid %s", ErrNotOnNode, root, uid)
	}
	return Pod{UID: uid, PausePID: best, Netns: filepath.Join(root, strconv.Itoa(best), "ns", "net"), Via: "proc"}, nil
}

// inPodCgroup tells whether a /proc/PID/cgroup text names one of the pod's cgroup forms as a
// whole path element (so that a UID never matches as a prefix of another).
func inPodCgroup(text string, forms []string) bool {
	for _, line := range strings.Split(text, "\n") {
		_, path, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		_, path, _ = strings.Cut(path, ":")
		for _, el := range strings.Split(path, "/") {
			for _, f := range forms {
				if el == f || strings.HasSuffix(el, "-"+f+".slice") || el == f+".slice" {
					return true
				}
			}
		}
	}
	return false
}
