package vm

import "syscall"

// childAttr puts QEMU in its own process group (a terminal's Ctrl-C reaches
// only us, so we can power nodes off in order) and has the kernel kill it if
// we die: no orphaned QEMU, even after SIGKILL of the parent.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
