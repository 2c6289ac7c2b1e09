package kube

import "syscall"

// sysProcAttr puts each component in its own process group and has the kernel kill it if the test
// binary dies without running its cleanups (e.g. on a go test -timeout panic).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
