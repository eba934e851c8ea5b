// Command fakesystemd stands in for /usr/lib/systemd/systemd in the
// initramfs boot test: it reports what the init handed over, as lines the
// test parses from the serial console, then powers the VM off.
package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	report("pid", fmt.Sprint(os.Getpid()))
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err == nil {
		report("root.bytes", fmt.Sprint(uint64(st.Blocks)*uint64(st.Bsize)))
		report("root.type", fmt.Sprintf("%#x", st.Type))
	}
	if err := unix.Statfs("/usr", &st); err == nil {
		report("usr.readonly", fmt.Sprint(st.Flags&unix.ST_RDONLY != 0))
		report("usr.type", fmt.Sprintf("%#x", st.Type))
	}
	for _, l := range []string{"/bin", "/sbin", "/lib", "/lib64"} {
		t, err := os.Readlink(l)
		report("link"+l, orErr(t, err))
	}
	b, err := os.ReadFile("/etc/pith-test")
	report("etc.pith-test", orErr(strings.TrimSpace(string(b)), err))
	b, err = os.ReadFile("/var/lib/pith-test")
	report("var.pith-test", orErr(strings.TrimSpace(string(b)), err))
	for _, d := range []string{"/home", "/tmp", "/root", "/proc/1", "/sys/block", "/dev/console", "/run", "/init", "/bbin"} {
		_, err := os.Stat(d)
		report("exists"+d, fmt.Sprint(err == nil))
	}
	b, err = os.ReadFile("/var/lib/pith/ignition-initramfs.source")
	report("ignition-source", orErr(strings.TrimSpace(string(b)), err))
	reportNet()
	mounts, _ := os.ReadFile("/proc/mounts")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 3 {
			report("mount "+f[1], f[0]+" "+f[2]+" "+strings.Split(f[3], ",")[0])
		}
	}
	// Leave ROOT clean for the test's e2fsck, as systemd's shutdown would.
	unix.Sync()
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		report("remount-ro", err.Error())
	}
	fmt.Println("PITH-TEST: done")
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func report(k, v string) { fmt.Printf("PITH-TEST: %s=%s\n", k, v) }

func orErr(s string, err error) string {
	if err != nil {
		return "ERR"
	}
	return s
}

// reportNet says what the init left on the NICs: each one's state and
// address count, and the routes through them (IPv4 and IPv6, but lo's).
func reportNet() {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := i.Addrs()
		report("net "+i.Name, fmt.Sprintf("up=%v addrs=%d", i.Flags&net.FlagUp != 0, len(addrs)))
	}
	routes := 0
	for _, f := range []struct {
		path string
		dev  func([]string) string
	}{
		{"/proc/net/route", func(f []string) string { return f[0] }},
		{"/proc/net/ipv6_route", func(f []string) string { return f[len(f)-1] }},
	} {
		b, _ := os.ReadFile(f.path)
		for _, l := range strings.Split(string(b), "\n") {
			if fs := strings.Fields(l); len(fs) > 1 && fs[0] != "Iface" && f.dev(fs) != "lo" {
				routes++
			}
		}
	}
	report("net.routes", fmt.Sprint(routes))
}
