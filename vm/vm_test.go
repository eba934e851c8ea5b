package vm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain doubles as a helper process for TestNoOrphanAfterParentKilled.
func TestMain(m *testing.M) {
	if dir := os.Getenv("PITH_VM_TEST_ORPHAN_DIR"); dir != "" {
		orphanHelper(dir)
		return
	}
	os.Exit(m.Run())
}

func probeFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe.bin")
	if err := os.WriteFile(p, probeFirmwareImage(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProbeFirmwareMatchesSource(t *testing.T) {
	if _, err := exec.LookPath("as"); err != nil {
		t.Skip("binutils' as is not installed; cannot re-assemble testdata/kvmprobe.S")
	}
	dir := t.TempDir()
	obj, bin := filepath.Join(dir, "p.o"), filepath.Join(dir, "p.bin")
	for _, c := range [][]string{
		{"as", "--32", "-o", obj, "testdata/kvmprobe.S"},
		{"ld", "-m", "elf_i386", "-e", "0xf0000", "-Ttext=0xF0000", "--oformat", "binary", "-o", bin, obj},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, probeFirmwareImage()) {
		t.Fatal("probeCode differs from testdata/kvmprobe.S: regenerate the byte table")
	}
}

// Under TCG the probe always completes: it is the reference the KVM probe
// is judged against.
func TestProbeFirmwareRunsUnderTCG(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, err := Start(ctx, Config{Name: "probe", BIOSFile: probeFile(t), Forwards: []int{}, MemoryMiB: 256}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	if _, _, err := (Console{m.SerialLog}).WaitFor(ctx, 0, m.Done(), nil, "KV"); err != nil {
		t.Fatal(err)
	}
}

func TestProbeAccelOverride(t *testing.T) {
	for _, tc := range []struct{ env, want string }{{"tcg", "tcg"}, {"kvm", "kvm"}} {
		t.Setenv("PITH_ACCEL", tc.env)
		if got := probeAccel(context.Background(), "qemu-system-x86_64"); got.Name != tc.want {
			t.Errorf("PITH_ACCEL=%s: got %s", tc.env, got.Name)
		}
	}
}

func hasSeq(args []string, seq ...string) bool {
	for i := range args {
		if i+len(seq) <= len(args) && slices.Equal(args[i:i+len(seq)], seq) {
			return true
		}
	}
	return false
}

func TestArgs(t *testing.T) {
	t.Setenv("PITH_QEMU_CPU", "") // the models below, not the caller's override
	for _, tc := range []struct {
		name    string
		cfg     Config
		want    [][]string
		notWant []string
	}{
		{"bios tcg", Config{Firmware: BIOS, Image: "b.qcow2", Accel: Accel{Name: "tcg"}},
			[][]string{{"-accel", "tcg"}, {"-cpu", tcgCPU}, {"-drive", "if=virtio,format=qcow2,discard=unmap,file=/s/disk.qcow2"},
				{"-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:1022-:22,hostfwd=tcp:127.0.0.1:3379-:2379,hostfwd=tcp:127.0.0.1:50153-:49153"}},
			[]string{"if=pflash", "stream", "tftp=", "bootfile=", "-boot"}},
		{"arm64 tcg", Config{Arch: "arm64", Firmware: UEFI, Image: "b.qcow2", Accel: Accel{Name: "tcg"}},
			[][]string{{"-cpu", "max,pauth-impdef=on"}}, nil},
		{"uefi kvm", Config{Firmware: UEFI, Image: "b.qcow2", Accel: Accel{Name: "kvm"}},
			[][]string{{"-accel", "kvm"}, {"-cpu", "host"},
				{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode},
				{"-drive", "if=pflash,format=raw,unit=1,file=/s/OVMF_VARS.fd"}}, nil},
		{"private network", Config{Firmware: BIOS, Switch: "/s/switch.sock", PrivateMAC: "52:54:00:77:00:02"},
			[][]string{{"-netdev", "stream,id=net1,server=off,addr.type=unix,addr.path=/s/switch.sock"},
				{"-device", "virtio-net-pci,netdev=net1,mac=52:54:00:77:00:02"},
				{"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:00:02"}}, nil},
		{"kernel", Config{Kernel: "/k", Initrd: "/i", Append: "console=ttyS0"},
			[][]string{{"-kernel", "/k", "-append", "console=ttyS0"}, {"-initrd", "/i"}}, []string{"if=virtio"}},
		{"netboot", Config{Netboot: &Netboot{TFTPDir: "/t,ftp", Bootfile: "boot.ipxe"}, GuestFwd: []string{"tcp:10.0.2.100:8080-cmd:relay"}},
			[][]string{{"-boot", "n"},
				{"-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:1022-:22,hostfwd=tcp:127.0.0.1:3379-:2379,hostfwd=tcp:127.0.0.1:50153-:49153,guestfwd=tcp:10.0.2.100:8080-cmd:relay,tftp=/t,,ftp,bootfile=boot.ipxe"}},
			[]string{"if=virtio", "cdrom", "bootindex", "if=pflash"}},
		// OVMF boots by bootindex, not -boot.
		{"netboot uefi", Config{Firmware: UEFI, Netboot: &Netboot{TFTPDir: "/t", Bootfile: "pith-pxe.efi"}},
			[][]string{{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode},
				{"-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:1022-:22,hostfwd=tcp:127.0.0.1:3379-:2379,hostfwd=tcp:127.0.0.1:50153-:49153,tftp=/t,bootfile=pith-pxe.efi",
					"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:aa:00:01,bootindex=1"}},
			[]string{"-boot", "if=virtio"}},
		{"netboot url", Config{Netboot: &Netboot{Bootfile: "http://10.0.2.100:8080/pith-pxe.ipxe"}},
			[][]string{{"-boot", "n"}, {"-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:1022-:22,hostfwd=tcp:127.0.0.1:3379-:2379,hostfwd=tcp:127.0.0.1:50153-:49153,bootfile=http://10.0.2.100:8080/pith-pxe.ipxe"}},
			[]string{"tftp="}},
		// Above the automatic PCI slots, below q35's ICH9 (0x1f).
		{"extra disks", Config{Image: "b.qcow2", ExtraDisks: []string{"/s/vdb.img", "/s/extra1.img"}},
			[][]string{{"-drive", "if=virtio,format=qcow2,discard=unmap,file=/s/disk.qcow2",
				"-drive", "if=none,id=extra1,format=raw,discard=unmap,file=/s/vdb.img",
				"-device", "virtio-blk-pci,drive=extra1,serial=pith-extra-1,addr=0x10",
				"-drive", "if=none,id=extra2,format=raw,discard=unmap,file=/s/extra1.img",
				"-device", "virtio-blk-pci,drive=extra2,serial=pith-extra-2,addr=0x11"}},
			[]string{"extra3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.defaults(); err != nil {
				t.Fatal(err)
			}
			m := &Machine{Config: tc.cfg, Dir: "/s", Disk: "/s/disk.qcow2", QMPSock: "/s/q", SerialSock: "/s/c", SerialLog: "/s/l",
				Ports: map[int]int{22: 1022, 2379: 3379, 49153: 50153}}
			args := m.args("/s/OVMF_VARS.fd", map[string]string{FwCfgUserData: "/s/ud"})
			for _, w := range tc.want {
				if !hasSeq(args, w...) {
					t.Errorf("missing %q in %q", w, args)
				}
			}
			for _, n := range tc.notWant {
				if strings.Contains(strings.Join(args, " "), n) {
					t.Errorf("unexpected %q in %q", n, args)
				}
			}
			if !hasSeq(args, "-fw_cfg", "name=opt/org.pith/user-data,file=/s/ud") {
				t.Errorf("no user-data fw_cfg in %q", args)
			}
			for _, a := range args {
				if strings.Contains(a, "hostfwd=tcp::") || strings.Contains(a, "hostfwd=tcp:0.0.0.0") {
					t.Errorf("forward not bound to 127.0.0.1: %s", a)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Firmware: "coreboot"}, `firmware "coreboot": use "bios" or "uefi"`},
		{Config{MemoryMiB: 64}, "memory 64 MiB is too small"},
		{Config{CPUs: -1}, "cpus -1"},
		{Config{Netboot: &Netboot{TFTPDir: "/t"}}, "netboot: needs a boot file"},
		{Config{Arch: "arm64", Netboot: &Netboot{Bootfile: "b"}}, "netboot: needs a boot file, on amd64"},
		{Config{ExtraDiskSizes: []int64{1 << 30, 1<<20 - 1}}, "extra disk of 1048575 bytes: use at least 1 MiB"},
		{Config{ExtraDisks: make([]string, 10), ExtraDiskSizes: make([]int64, 6)}, "16 extra disks: at most 15"},
	} {
		_, err := Start(context.Background(), tc.cfg, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestOverlay(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", base, "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, tc := range []struct {
		size     int64
		wantSize int64
		wantErr  string
	}{
		{0, 64 << 20, ""},
		{128 << 20, 128 << 20, ""},
		{32 << 20, 0, "smaller than the image"},
	} {
		ov := filepath.Join(dir, fmt.Sprintf("ov-%d.qcow2", tc.size))
		err := createOverlay(context.Background(), base, ov, tc.size)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("size %d: got %v, want %q", tc.size, err, tc.wantErr)
			}
			if _, err := os.Stat(ov); err == nil {
				t.Errorf("size %d: overlay left behind after an error", tc.size)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("qemu-img", "info", "--output=json", ov).Output()
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			VirtualSize int64  `json:"virtual-size"`
			Backing     string `json:"full-backing-filename"`
		}
		json.Unmarshal(out, &info)
		if info.VirtualSize != tc.wantSize || info.Backing != base {
			t.Errorf("size %d: overlay is %d bytes backed by %q; want %d backed by %q", tc.size, info.VirtualSize, info.Backing, tc.wantSize, base)
		}
	}
}

// swClient is a fake QEMU stream netdev: length-prefixed frames.
type swClient struct{ c net.Conn }

func (s swClient) send(t *testing.T, dst, src byte, payload string) {
	t.Helper()
	f := append([]byte{dst, dst, dst, dst, dst, dst, 2, 0, 0, 0, 0, src, 0x88, 0xb5}, payload...)
	if dst == 0xff {
		copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	} else {
		copy(f, []byte{2, 0, 0, 0, 0, dst})
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(len(f)))
	if _, err := s.c.Write(append(b, f...)); err != nil {
		t.Fatal(err)
	}
}

// recv returns the next frame's payload, or "" after a short quiet period.
func (s swClient) recv() string {
	s.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var h [4]byte
	if _, err := io.ReadFull(s.c, h[:]); err != nil {
		return ""
	}
	f := make([]byte, binary.BigEndian.Uint32(h[:]))
	if _, err := io.ReadFull(s.c, f); err != nil {
		return ""
	}
	return string(f[14:])
}

func TestSwitch(t *testing.T) {
	sw, err := NewSwitch(filepath.Join(t.TempDir(), "sw.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	var cl []swClient
	for i := 0; i < 3; i++ {
		c, err := net.Dial("unix", sw.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cl = append(cl, swClient{c})
	}
	waitPorts(t, sw, 3)
	// Broadcast from 1 reaches 2 and 3, not 1.
	cl[0].send(t, 0xff, 1, "bcast")
	for i, want := range []string{"", "bcast", "bcast"} {
		if got := cl[i].recv(); got != want {
			t.Errorf("client %d got %q, want %q", i+1, got, want)
		}
	}
	// 2 answers 1 by unicast: 1 was learned, so only 1 hears it; 3 was
	// not learned yet, so a frame to it floods.
	cl[1].send(t, 1, 2, "to1")
	cl[1].send(t, 3, 2, "to3")
	for i, want := range [][]string{{"to1", ""}, {"", ""}, {"to3", ""}} {
		if got := []string{cl[i].recv(), cl[i].recv()}; !slices.Equal(got, want) && !(i == 0 && slices.Equal(got, []string{"to1", "to3"})) {
			t.Errorf("client %d got %q, want %q", i+1, got, want)
		}
	}
	// A peer sending garbage (oversized length) is dropped; the rest go on.
	cl[2].c.Write([]byte{0xff, 0xff, 0xff, 0xff})
	waitPorts(t, sw, 2)
	cl[0].send(t, 2, 1, "still")
	if got := cl[1].recv(); got != "still" {
		t.Errorf("after dropping a bad peer: got %q", got)
	}
}

func waitPorts(t *testing.T, sw *Switch, n int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		sw.mu.Lock()
		got := len(sw.ports)
		sw.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("switch never had %d ports", n)
}

// TestMachineLifecycle runs a real QEMU (the probe firmware instead of a
// disk): console log across a reset, QMP, forwards on 127.0.0.1, stop.
func TestMachineLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	m, err := Start(ctx, Config{Name: "n1", BIOSFile: probeFile(t), MemoryMiB: 256}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	con := Console{m.SerialLog}
	off, _, err := con.WaitFor(ctx, 0, m.Done(), nil, "KV")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Reset(); err != nil {
		t.Fatal(err)
	}
	// The log keeps the first boot and gets the second.
	if _, _, err := con.WaitFor(ctx, off, m.Done(), nil, "KV"); err != nil {
		t.Fatal(err)
	}
	for _, g := range DefaultForwards {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(m.Ports[g]))
		if err != nil {
			t.Errorf("forward of guest port %d: %v", g, err)
			continue
		}
		c.Close()
	}
	pid, err := os.ReadFile(filepath.Join(dir, "qemu.pid"))
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(m.PID()) {
		t.Errorf("qemu.pid = %q (%v), want %d", pid, err, m.PID())
	}
	var info Info
	if b, err := os.ReadFile(filepath.Join(dir, "node.json")); err != nil || json.Unmarshal(b, &info) != nil || info.PID != m.PID() {
		t.Errorf("node.json: %s %v", b, err)
	}
	// No ACPI in the probe: Stop falls back to QMP quit.
	m.Stop(time.Second)
	if m.Running() || m.Err() != nil {
		t.Errorf("after Stop: running=%v err=%v", m.Running(), m.Err())
	}
}

func TestCancelKills(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	m, err := Start(ctx, Config{Name: "n1", BIOSFile: probeFile(t), MemoryMiB: 256, Forwards: []int{}}, t.TempDir())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cancel()
	select {
	case <-m.Done():
	case <-time.After(time.Minute):
		m.Kill()
		t.Fatal("QEMU still running a minute after its context was cancelled")
	}
}

func orphanHelper(dir string) {
	m, err := Start(context.Background(), Config{Name: "n1", BIOSFile: filepath.Join(dir, "probe.bin"), MemoryMiB: 256, Forwards: []int{}}, filepath.Join(dir, "n1"))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(m.PID())
	select {}
}

// TestNoOrphanAfterParentKilled: SIGKILL of the process that started QEMU
// (no cleanup code runs) still takes QEMU down, through Pdeathsig.
func TestNoOrphanAfterParentKilled(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "probe.bin"), probeFirmwareImage(), 0o644)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PITH_VM_TEST_ORPHAN_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil || pid == 0 {
		cmd.Process.Kill()
		t.Fatalf("helper did not start QEMU: %v", err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("QEMU %d not running: %v", pid, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for i := 0; i < 600; i++ {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(b), ") Z ") {
			return // gone (or a zombie waiting for init to reap it)
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("QEMU %d outlived its killed parent", pid)
}

// The guest probe's answer is cached per host boot and QEMU binary.
func TestProbeAccelCached(t *testing.T) {
	if err := kvmCreateVM(); err != nil {
		t.Skipf("no KVM to probe here (%v): the answer is TCG without a guest probe", err)
	}
	t.Setenv("PITH_ACCEL", "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	first := probeAccel(context.Background(), "qemu-system-x86_64")
	dir, _ := os.UserCacheDir()
	b, err := os.ReadFile(filepath.Join(dir, "pith", "kvm-probe.json"))
	if err != nil || !strings.Contains(string(b), probeKey("qemu-system-x86_64")) {
		t.Fatalf("cache: %s %v", b, err)
	}
	if second := probeAccel(context.Background(), "qemu-system-x86_64"); second != first {
		t.Errorf("cached %+v, probed %+v", second, first)
	}
	// An answer planted under this key is returned without probing again.
	planted := Accel{Name: "tcg", Reason: "planted"}
	nb, _ := json.Marshal(struct {
		Key   string
		Accel Accel
	}{probeKey("qemu-system-x86_64"), planted})
	os.WriteFile(filepath.Join(dir, "pith", "kvm-probe.json"), nb, 0o644)
	if got := probeAccel(context.Background(), "qemu-system-x86_64"); got != planted {
		t.Errorf("got %+v, want the cached %+v", got, planted)
	}
}

// TestUserDataCopyIsPrivate: the node's copy of its user-data (which may
// hold its member key and the discovery token) is 0600, also when it
// replaces a world-readable copy from an earlier run.
func TestUserDataCopyIsPrivate(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "ud.yaml")
	if err := os.WriteFile(src, []byte("#cloud-config\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, src, want string }{
		{"given", src, "#cloud-config\n"},
		{"empty", "", EmptyUserData},
	} {
		dst := filepath.Join(dir, tc.name)
		if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := saveUserData(tc.src, dst); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dst)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(dst)
		if st.Mode().Perm() != 0o600 || string(b) != tc.want {
			t.Errorf("%s: mode %v content %q", tc.name, st.Mode().Perm(), b)
		}
	}
}

// NoUserData leaves the user-data out of fw_cfg (a bare-metal boot whose
// disk carries its config); other entries stay.
func TestFwCfgFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want map[string]string
	}{
		{"user-data", Config{FwCfg: map[string]string{"opt/x": "/x"}}, map[string]string{"opt/x": "/x", FwCfgUserData: "/s/ud"}},
		{"no user-data", Config{FwCfg: map[string]string{"opt/x": "/x"}, NoUserData: true}, map[string]string{"opt/x": "/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.fwCfgFiles("/s/ud"); !maps.Equal(got, tc.want) {
				t.Errorf("fwCfgFiles = %v, want %v", got, tc.want)
			}
		})
	}
}

// PITH_QEMU_CPU replaces the model whatever the accelerator.
func TestCPUModelOverride(t *testing.T) {
	t.Setenv("PITH_QEMU_CPU", "max")
	for _, a := range []string{"tcg", "kvm"} {
		if got := (Config{Accel: Accel{Name: a}}).cpuModel(); got != "max" {
			t.Errorf("%s with PITH_QEMU_CPU=max: -cpu %q", a, got)
		}
	}
	t.Setenv("PITH_QEMU_CPU", "")
	if got := (Config{Accel: Accel{Name: "tcg"}}).cpuModel(); got != tcgCPU {
		t.Errorf("tcg without the override: -cpu %q, want %q", got, tcgCPU)
	}
}
