package vm

import "syscall"

// PowerCut kills every machine's QEMU with SIGKILL at once (the signals
// go out before any wait), then waits until all have exited: for the
// guests it is a power cut, everything not yet on the virtual disk (their
// page caches, QEMU's unflushed qcow2 metadata) is gone.
func PowerCut(ms ...*Machine) {
	for _, m := range ms {
		if m.cmd != nil && m.cmd.Process != nil && m.Running() {
			m.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	for _, m := range ms {
		<-m.done
	}
}
