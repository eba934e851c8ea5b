package fwcfg

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

func fwcfgSelect(port uint16, key uint16)
func fwcfgRead(port uint16, buf *byte, n uintptr)

// portRead selects key on the fw_cfg selector at base and reads n bytes
// from the data port (base+1) in one pass. ioperm is per thread, so the
// goroutine stays on its thread and gives the ports back before leaving.
func portRead(base uint16, key uint16, n int) ([]byte, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Ioperm(int(base), 2, 1); err != nil {
		return nil, err
	}
	defer unix.Ioperm(int(base), 2, 0)
	buf := make([]byte, n)
	fwcfgSelect(base, key)
	if n > 0 {
		fwcfgRead(base+1, (*byte)(unsafe.Pointer(&buf[0])), uintptr(n))
	}
	return buf, nil
}

const havePorts = true
