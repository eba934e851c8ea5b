// Package crashpoint stops a node for good at a named step that writes its
// state, so that a VM test can cut the power there (SIGKILL of QEMU) and
// check what the next boot makes of the disk, without guessing the moment
// with a sleep.
//
// A boot names at most one step: the kernel command line's
// pith.crashpoint=NAME (an operator's setting, as any kernel argument), or
// QEMU's fw_cfg entry opt/org.pith/crashpoint, which the host sets for one
// QEMU launch only: the boot after the cut, started without it, runs
// through, and nothing about the crash point is ever written to the disk
// whose state is being tested. No name, the hooks cost one comparison.
//
// At the named step the process flushes every file system (sync), says
// "pith: crashpoint NAME reached" on the console (/dev/kmsg) and in its
// log, and never returns from Reach.
package crashpoint

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CmdlineKey names the step on the kernel command line.
const CmdlineKey = "pith.crashpoint"

// FwCfgName is the QEMU fw_cfg entry naming the step (-fw_cfg
// name=opt/org.pith/crashpoint,file=...).
const FwCfgName = "opt/org.pith/crashpoint"

// Line is what the console shows when the step is reached; hosts wait for it.
func Line(name string) string { return "pith: crashpoint " + name + " reached" }

// Points is a boot's crash point setting. The zero value names none.
type Points struct {
	// Name is the step to stop at ("" none).
	Name string
	// Out gets Line (the kernel log on a node); Log gets it too (the
	// process's own log, stderr under systemd). Either may be nil.
	Out, Log io.Writer
	// Sync flushes the file systems before the line is printed, so the
	// host's kill loses nothing written before the step.
	Sync func()
	// Stop never returns on a node; tests make it return.
	Stop func()
}

// Armed reports whether name is this boot's crash point.
func (p *Points) Armed(name string) bool { return p != nil && p.Name != "" && p.Name == name }

// Reach stops at name if it is this boot's crash point.
func (p *Points) Reach(name string) {
	if !p.Armed(name) {
		return
	}
	if p.Sync != nil {
		p.Sync()
	}
	for _, w := range []io.Writer{p.Out, p.Log} {
		if w != nil {
			// <3>: the kernel log's err level, shown on the console
			// whatever the loglevel short of quiet's.
			prefix := ""
			if w == p.Out {
				prefix = "<3>"
			}
			fmt.Fprintf(w, "%s%s\n", prefix, Line(name))
		}
	}
	if p.Stop != nil {
		p.Stop()
	}
}

// Parse returns the crash point named by a kernel command line and a
// fw_cfg entry's content (either may be empty; the command line wins).
func Parse(cmdline, fwcfg string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, CmdlineKey+"="); ok {
			return v
		}
	}
	return strings.TrimSpace(fwcfg)
}

// fwCfgRaw is the entry's content through the kernel's qemu_fw_cfg sysfs
// (a few bytes: the sysfs read's cost does not matter here).
const fwCfgRaw = "/sys/firmware/qemu_fw_cfg/by_name/" + FwCfgName + "/raw"

// node is this boot's setting, read once.
var node = sync.OnceValue(func() *Points {
	cmdline, _ := os.ReadFile("/proc/cmdline")
	fw, _ := os.ReadFile(fwCfgRaw)
	p := &Points{Name: Parse(string(cmdline), string(fw)), Log: os.Stderr, Sync: syscall.Sync,
		Stop: func() {
			for {
				time.Sleep(time.Hour) // a sleeping timer: never a deadlock panic
			}
		}}
	if p.Name != "" {
		if k, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
			p.Out = k
		}
	}
	return p
})

// Reach stops the process for good at step name when this boot names it
// (see the package comment); otherwise it returns at once.
func Reach(name string) { node().Reach(name) }

// Armed reports whether this boot names step name, for a step that must
// prepare what the cut is to find (a half-written block) before Reach.
func Armed(name string) bool { return node().Armed(name) }
