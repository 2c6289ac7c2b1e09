// Package process implements faults on local processes: process-kill and process-pause.
package process

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/internal/procfs"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// proc is a process identified beyond its pid: the start time tells it from a later process that
// reused the pid, so a revert after a crash never signals a stranger.
type proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
	Name  string `json:"name"`
}

func (p proc) String() string { return fmt.Sprintf("pid %d (%s)", p.PID, p.Name) }

// readProc reads a live process's identity from /proc.
func readProc(pid int) (proc, error) {
	st, err := procfs.ReadPID(pid)
	if err != nil {
		return proc{}, err
	}
	return proc{PID: pid, Start: st.Start, Name: st.Name}, nil
}

// state returns the one-letter state of /proc/PID/stat (R, S, T, Z, ...).
func state(pid int) (byte, error) {
	st, err := procfs.ReadPID(pid)
	return st.State, err
}

// same reports whether p still names the same live process.
func (p proc) same() bool {
	cur, err := readProc(p.PID)
	return err == nil && cur.Start == p.Start
}

// candidates resolves a target to live processes, never including faultline itself or pid 1.
func candidates(t runbooks.ProcessTarget) ([]proc, error) {
	self := os.Getpid()
	if t.PidFile != "" {
		b, err := os.ReadFile(t.PidFile)
		if err != nil {
			return nil, policy.Refusef("pidFile", "read %s: %v", t.PidFile, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return nil, policy.Refusef("pidFile", "%s does not hold a pid: %q", t.PidFile, strings.TrimSpace(string(b)))
		}
		if pid == 1 || pid == self {
			return nil, policy.Refusef("pidFile", "%s names pid %d, which faultline never signals", t.PidFile, pid)
		}
		p, err := readProc(pid)
		if err != nil {
			return nil, policy.Refusef("pidFile", "%s names pid %d, which is not running", t.PidFile, pid)
		}
		return []proc{p}, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 || pid == self {
			continue
		}
		if !matchesExe(pid, t.Exe) {
			continue
		}
		p, err := readProc(pid)
		if errors.Is(err, os.ErrNotExist) {
			continue // exited while we looked
		}
		if err != nil {
			return nil, err
		}
		if st, _ := state(pid); st == 'Z' {
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b proc) int { return a.PID - b.PID })
	return out, nil
}

// matchesExe compares the executable's base name; the kernel's 15-byte comm is the fallback for
// processes whose exe link cannot be read (another user's, or a deleted binary).
func matchesExe(pid int, name string) bool {
	if link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		return filepath.Base(strings.TrimSuffix(link, " (deleted)")) == name
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	c := strings.TrimSpace(string(comm))
	return c == name || (len(c) == 15 && strings.HasPrefix(name, c))
}

// choose picks count or percent of the candidates at random (all when neither is set) and
// enforces the policy's blast radius.
func choose(all []proc, t runbooks.ProcessTarget, pol runbooks.Policy, rng *rand.Rand) ([]proc, error) {
	n := len(all)
	switch {
	case t.Count > 0:
		n = min(t.Count, len(all))
	case t.Percent > 0:
		n = max(1, int(math.Ceil(float64(len(all))*t.Percent/100)))
	}
	if pol.MaxTargets > 0 && n > pol.MaxTargets {
		return nil, policy.Refusef("policy.maxTargets", "the fault would touch %d processes, the limit is %d", n, pol.MaxTargets)
	}
	picked := append([]proc(nil), all...)
	rng.Shuffle(len(picked), func(i, j int) { picked[i], picked[j] = picked[j], picked[i] })
	return picked[:n], nil
}

func describe(ps []proc) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// newRand seeds the picks from the run (injectors.Env.Seed): the same seed and the same
// candidates, which candidates sorts by pid, give the same processes.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }

// randomText says how a pick of k processes out of n was random, or "" when it took them all.
func randomText(t runbooks.ProcessTarget, k, n int) string {
	if k >= n {
		return ""
	}
	how := fmt.Sprintf("count %d", t.Count)
	if t.Count == 0 {
		how = fmt.Sprintf("percent %g", t.Percent)
	}
	return fmt.Sprintf("process pick is random (%s: %d of %d candidates)", how, k, n)
}
