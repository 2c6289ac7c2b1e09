package runbooks

import (
	"strings"
	"syscall"
)

// signalNames are the signals a process-kill fault may send. SIGSTOP/SIGCONT are left out on
// purpose: a stop without a ledgered continue is what process-pause is for.
const signalNames = "SIGABRT, SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2"

// Signal maps a signal name (with or without the SIG prefix, any case) to its number.
func Signal(name string) (syscall.Signal, bool) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	switch n {
	case "SIGKILL":
		return syscall.SIGKILL, true
	case "SIGTERM":
		return syscall.SIGTERM, true
	case "SIGINT":
		return syscall.SIGINT, true
	case "SIGHUP":
		return syscall.SIGHUP, true
	case "SIGQUIT":
		return syscall.SIGQUIT, true
	case "SIGABRT":
		return syscall.SIGABRT, true
	case "SIGUSR1":
		return syscall.SIGUSR1, true
	case "SIGUSR2":
		return syscall.SIGUSR2, true
	}
	return 0, false
}
