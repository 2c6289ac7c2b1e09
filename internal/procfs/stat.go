// Package procfs reads the few facts faultline needs about a process from /proc/PID/stat: its name,
// its state and its start time. The start time is what makes a PID an identity: a PID is reused, a
// (PID, start) pair is not, so ledger owners, pause targets and network namespace owners all
// compare it before they trust a PID.
package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat is what faultline reads of /proc/PID/stat.
type Stat struct {
	Name  string // the command name, field 2 without its parentheses
	State byte   // field 3: R, S, D, T, Z, ...
	Start uint64 // field 22: the start time in clock ticks after boot
}

// ReadStat reads and parses a stat file, e.g. /proc/42/stat.
func ReadStat(path string) (Stat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Stat{}, err
	}
	return parseStat(path, string(b))
}

// ReadPID reads /proc/PID/stat.
func ReadPID(pid int) (Stat, error) { return ReadStat(fmt.Sprintf("/proc/%d/stat", pid)) }

// StartTime returns a process's start time in clock ticks after boot.
func StartTime(pid int) (uint64, error) {
	st, err := ReadPID(pid)
	return st.Start, err
}

func parseStat(path, s string) (Stat, error) {
	// The command name may contain spaces and parentheses: it runs from the first '(' to the
	// last ')', and the fields resume after that.
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return Stat{}, fmt.Errorf("parse %s: no command name", path)
	}
	f := strings.Fields(s[closing+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("parse %s: %d fields", path, len(f))
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("parse %s start time: %w", path, err)
	}
	return Stat{Name: s[open+1 : closing], State: f[0][0], Start: start}, nil
}
