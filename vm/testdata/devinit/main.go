// devinit is a tiny /init for developing package vm without a Pith image:
// under a Debian kernel it loads fw_cfg and virtio-net, prints the fw_cfg
// blobs, then exchanges broadcast frames on eth1 (the private network) and
// prints what it hears, ending with a login-like marker.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	unix.Mount("proc", "/proc", "proc", 0, "")
	unix.Mount("sysfs", "/sys", "sysfs", 0, "")
	rel := uname()
	for _, m := range strings.Split(os.Getenv("DEVINIT_MODULES"), ",") {
		load(filepath.Join("/lib/modules", rel, m))
	}
	time.Sleep(time.Second)
	for _, n := range []string{"user-data", "meta-data"} {
		b, err := os.ReadFile("/sys/firmware/qemu_fw_cfg/by_name/opt/org.pith/" + n + "/raw")
		fmt.Printf("devinit: fw_cfg %s: %q %v\n", n, strings.TrimSpace(string(b)), err)
	}
	fmt.Println("devinit: login: ready")
	ping()
	for {
		time.Sleep(time.Hour)
	}
}

func uname() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

func load(path string) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Println("devinit:", err)
		return
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		fmt.Println("devinit: load", path, err)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ping broadcasts "hello from <mac>" on eth1 with a private EtherType and
// prints frames from others.
func ping() {
	ifi, err := netIf("eth1")
	if err != nil {
		fmt.Println("devinit:", err)
		return
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(0x88b5)))
	if err != nil {
		fmt.Println("devinit: socket", err)
		return
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(0x88b5), Ifindex: ifi.index}
	unix.Bind(fd, sa)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return
			}
			if n > 14 {
				fmt.Printf("devinit: heard %q\n", buf[14:n])
			}
		}
	}()
	for i := 0; i < 30; i++ {
		frame := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ifi.mac...)
		frame = append(frame, 0x88, 0xb5)
		frame = append(frame, []byte("hello from "+fmt.Sprintf("%x", ifi.mac))...)
		dst := &unix.SockaddrLinklayer{Protocol: htons(0x88b5), Ifindex: ifi.index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		unix.Sendto(fd, frame, 0, dst)
		time.Sleep(time.Second)
	}
}

type iface struct {
	index int
	mac   []byte
}

func netIf(name string) (iface, error) {
	for i := 0; i < 50; i++ {
		if b, err := os.ReadFile("/sys/class/net/" + name + "/ifindex"); err == nil {
			var idx int
			fmt.Sscan(string(b), &idx)
			a, _ := os.ReadFile("/sys/class/net/" + name + "/address")
			var mac []byte
			for _, h := range strings.Split(strings.TrimSpace(string(a)), ":") {
				var v byte
				fmt.Sscanf(h, "%x", &v)
				mac = append(mac, v)
			}
			// bring the link up
			s, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			req, _ := unix.NewIfreq(name)
			req.SetUint16(unix.IFF_UP)
			unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, req)
			unix.Close(s)
			return iface{idx, mac}, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	ents, _ := os.ReadDir("/sys/class/net")
	var have []string
	for _, e := range ents {
		have = append(have, e.Name())
	}
	return iface{}, fmt.Errorf("no %s (have %v)", name, have)
}
