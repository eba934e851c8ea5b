package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/pith-os/pith/initramfs/verity"
)

// This test boots Debian's cloud kernel with the real initramfs (u-root
// busybox + pith-init + the kernel's modules) under QEMU on a small GPT
// disk, and checks from the serial console and the disk what a user would:
// the steps, the switch to "systemd", the skeleton, the grown ROOT, a
// clean second boot, and the failure paths.

const (
	bootUsrUUID  = "5A1D0E3C-3B0F-4F4B-9C55-0D2D1C3B4A01"
	bootRootUUID = "9E0D4C3B-2A19-4E7F-8B6A-5C4D3E2F1A09"
	usrTypeGUID  = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"
	rootTypeGUID = "3884DD41-8582-4404-B9A8-E9B84F2DF50E"
)

func pithCache(t *testing.T) string {
	t.Helper()
	d, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(d, "pith")
}

func mustRun(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var kernelOnce sync.Mutex

// debianKernel fetches Debian's cloud kernel package (apt-get download, no
// install) once into the cache and returns vmlinuz, the modules dir and
// the version.
func debianKernel(t *testing.T) (vmlinuz, modules, version string) {
	t.Helper()
	kernelOnce.Lock()
	defer kernelOnce.Unlock()
	out := mustRun(t, "", "apt-cache", "depends", "linux-image-cloud-amd64")
	m := regexp.MustCompile(`Depends: (linux-image-(\S+-cloud-amd64))`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("apt-cache depends linux-image-cloud-amd64 names no kernel package:\n%s", out)
	}
	pkg, version := m[1], m[2]
	dir := filepath.Join(pithCache(t), "test-kernel", version)
	vmlinuz = filepath.Join(dir, "boot", "vmlinuz-"+version)
	modules = filepath.Join(dir, "lib", "modules", version)
	if _, err := os.Stat(vmlinuz); err == nil {
		return vmlinuz, modules, version
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".dl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	t.Logf("downloading %s (Debian apt repository)", pkg)
	mustRun(t, tmp, "apt-get", "download", "-q", pkg)
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download %s left %v", pkg, debs)
	}
	mustRun(t, tmp, "dpkg-deb", "-x", debs[0], filepath.Join(tmp, "x"))
	if err := os.Rename(filepath.Join(tmp, "x"), dir); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	return vmlinuz, modules, version
}

func goBuild(t *testing.T, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// makeBootDisk builds a 64 MiB GPT disk with USR-A (squashfs holding the
// fake systemd and /usr/share/pith defaults) and ROOT (empty ext4), then
// enlarges the file to 128 MiB as a bigger VM disk would be.
func makeBootDisk(t *testing.T, dir, systemd string) (disk, rootHash string) {
	usr := filepath.Join(dir, "usr")
	for name, body := range map[string]string{
		"share/pith/etc/pith-test":     "hello etc\n",
		"share/pith/var/lib/pith-test": "hello var\n",
		"bin/.keep":                    "",
	} {
		p := filepath.Join(usr, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(usr, "lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(systemd)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(usr, "lib/systemd/systemd"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	sq := filepath.Join(dir, "usr.sqfs")
	mustRun(t, dir, "mksquashfs", usr, sq, "-comp", "zstd", "-noappend", "-all-root", "-quiet", "-no-progress")
	disk = filepath.Join(dir, "disk.img")
	mustRun(t, dir, "truncate", "-s", "64M", disk)
	mustRun(t, dir, "sgdisk", "-o",
		"-n", "3:1M:+16M", "-t", "3:"+usrTypeGUID, "-c", "3:USR-A", "-u", "3:"+bootUsrUUID,
		"-n", "9:17M:0", "-t", "9:"+rootTypeGUID, "-c", "9:ROOT", "-u", "9:"+bootRootUUID, disk)
	mustRun(t, dir, "dd", "if="+sq, "of="+disk, "bs=1M", "seek=1", "conv=notrunc", "status=none")
	// dm-verity tree after the squashfs, as the image builder lays it out.
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	usrPart := offsetRW{f, 1 << 20}
	end, err := verity.FSEnd(usrPart)
	if err != nil {
		t.Fatal(err)
	}
	rootHash, err = verity.Format(usrPart, end, []byte("pith-test-salt"), [16]byte{})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	first, last := partSectors(t, disk, 9)
	mustRun(t, dir, "mkfs.ext4", "-q", "-F", "-L", "ROOT", "-E", fmt.Sprintf("offset=%d", first*512), disk, fmt.Sprintf("%dk", (last-first+1)/2))
	mustRun(t, dir, "truncate", "-s", "128M", disk)
	return disk, rootHash
}

// offsetRW addresses a partition inside a disk image file.
type offsetRW struct {
	f   *os.File
	off int64
}

func (o offsetRW) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off+o.off) }
func (o offsetRW) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off+o.off) }

func partSectors(t *testing.T, disk string, n int) (first, last int64) {
	t.Helper()
	out := mustRun(t, "", "sgdisk", "-i", strconv.Itoa(n), disk)
	f := regexp.MustCompile(`First sector: (\d+)`).FindStringSubmatch(out)
	l := regexp.MustCompile(`Last sector: (\d+)`).FindStringSubmatch(out)
	if f == nil || l == nil {
		t.Fatalf("sgdisk -i %d:\n%s", n, out)
	}
	first, _ = strconv.ParseInt(f[1], 10, 64)
	last, _ = strconv.ParseInt(l[1], 10, 64)
	return first, last
}

// console collects QEMU's serial output and lets a writer wait for text.
type console struct {
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
	done bool
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	c.cond.Broadcast()
	return len(p), nil
}

// waitCount blocks until s occurs at least n times or QEMU ended.
func (c *console) waitCount(s string, n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for strings.Count(c.buf.String(), s) < n {
		if c.done {
			return false
		}
		c.cond.Wait()
	}
	return true
}

// boot runs QEMU (TCG) until the guest powers off or reboots (-no-reboot)
// and returns the serial console. Once the emergency shell starts, each of
// lines is typed at a fresh shell prompt.
func boot(t *testing.T, kernel, initrd, disk, cmdline string, lines ...string) string {
	t.Helper()
	cmd := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "1",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-net", "none",
		"-kernel", kernel, "-initrd", initrd,
		// no_timer_check: under TCG on a starved host the kernel's IO-APIC
		// timer check can fail and panic at 0.07 s (seen in a loaded run).
		"-append", "console=ttyS0,115200n8 panic=10 no_timer_check "+cmdline,
		"-drive", "file="+disk+",if=virtio,format=raw")
	// If go test's -timeout kills this process, QEMU goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	con := &console{}
	con.cond = sync.NewCond(&con.mu)
	cmd.Stdout, cmd.Stderr = con, con
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A hung guest is ended by go test's -timeout; make sure QEMU goes too.
	t.Cleanup(func() { cmd.Process.Kill() })
	go func() {
		if !con.waitCount("starting the emergency shell", 1) {
			return
		}
		for i, l := range lines {
			if !con.waitCount("\n$ ", i+1) {
				return
			}
			io.WriteString(stdin, l+"\n")
		}
	}()
	err = cmd.Wait()
	con.mu.Lock()
	con.done = true
	con.cond.Broadcast()
	log := con.buf.String()
	con.mu.Unlock()
	if err != nil {
		t.Fatalf("qemu: %v\nconsole:\n%s", err, log)
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "pith-init") {
			t.Log(strings.TrimSpace(l))
		}
	}
	return log
}

// expectInOrder checks that each pattern matches a console line after the
// previous one's.
func expectInOrder(t *testing.T, log string, patterns ...string) {
	t.Helper()
	rest := log
	for _, p := range patterns {
		loc := regexp.MustCompile(p).FindStringIndex(rest)
		if loc == nil {
			t.Fatalf("console lacks %q (in order)\nconsole:\n%s", p, log)
		}
		rest = rest[loc[1]:]
	}
}

func TestBootQEMU(t *testing.T) {
	t.Parallel() // each boots its own QEMU: two at a time use both cores
	for _, tool := range []string{"qemu-system-x86_64", "sgdisk", "mksquashfs", "mkfs.ext4", "e2fsck", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps installs it): %v", tool, err)
		}
	}
	dir := t.TempDir()
	vmlinuz, modules, version := debianKernel(t)
	initBin := filepath.Join(dir, "pith-init")
	goBuild(t, initBin, "./cmd/pith-init")
	systemd := filepath.Join(dir, "fakesystemd")
	goBuild(t, systemd, "./testdata/fakesystemd")

	initrd := filepath.Join(dir, "initrd")
	res, err := Build(context.Background(), Options{
		KernelVersion: version, ModulesDir: modules, Out: initrd, InitBinary: initBin,
		CacheDir: pithCache(t), Log: t.Logf,
		// The host's /usr stands in for the image's USR (both Debian): the
		// init checks ROOT with a real e2fsck, as on a built image.
		FsckFrom: "/usr",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initramfs: %d bytes compressed, modules %v", res.Size, res.Modules)
	disk, rootHash := makeBootDisk(t, dir, systemd)
	cmdline := "pith.slot=a pith.usr=PARTUUID=" + strings.ToLower(bootUsrUUID) + " pith.root=PARTUUID=" + bootRootUUID + " pith.platform=qemu"

	t.Run("first boot, verified USR", func(t *testing.T) {
		log := boot(t, vmlinuz, initrd, disk, cmdline+" pith.usrhash="+rootHash)
		expectInOrder(t, log,
			`pith-init\[\+\d+\.\d{3}s\]: started .* mounted /proc /sys /dev /run`,
			`slot=a usr=PARTUUID=`+bootUsrUUID+` root=PARTUUID=`+bootRootUUID+` platform=qemu`,
			`loaded \d+ kernel modules for `+regexp.QuoteMeta(version),
			`grew ROOT partition 9 on /dev/vda: \d+ -> \d+ sectors`,
			`checked ROOT \(/dev/vda9\): clean`,
			`mounted ROOT \(/dev/vda9, PARTUUID=`+bootRootUUID+`\) rw at /sysroot`,
			`dm-verity: /dev/(dm-0|mapper/usr) checks /dev/vda3 \(\d+ blocks\) against root hash `+rootHash[:16],
			`mounted USR-A \(/dev/vda3, PARTUUID=`+bootUsrUUID+`\) squashfs ro at /sysroot/usr verified by dm-verity`,
			`first boot: created the ROOT skeleton`,
			`grew ROOT ext4 from \d+ to \d+ blocks`,
			`switching root to /usr/lib/systemd/systemd \((\d+\.\d+)s since kernel boot\)`,
			`PITH-TEST: pid=1\r?\n`,
			`PITH-TEST: usr.readonly=true`,
			`PITH-TEST: link/bin=usr/bin`,
			`PITH-TEST: link/lib64=usr/lib64`,
			`PITH-TEST: etc.pith-test=hello etc`,
			`PITH-TEST: var.pith-test=hello var`,
			`PITH-TEST: exists/home=true`,
			`PITH-TEST: exists/proc/1=true`,
			`PITH-TEST: exists/dev/console=true`,
			`PITH-TEST: exists/init=false`, // the initramfs was freed
			`PITH-TEST: exists/bbin=false`,
			`PITH-TEST: mount /=/dev/vda9 ext4 rw`,
			`PITH-TEST: mount /usr=/dev/(dm-0|mapper/usr) squashfs ro`,
			`PITH-TEST: done`)
		if m := regexp.MustCompile(`switching root to \S+ \((\d+\.\d+)s since kernel boot\)`).FindStringSubmatch(log); m != nil {
			s := regexp.MustCompile(`pith-init\[\+(\d+\.\d+)s\]: switching root`).FindStringSubmatch(log)
			t.Logf("TCG: switch_root at %ss after kernel boot, init ran %ss", m[1], s[1])
		}
		if strings.Contains(log, "warning:") {
			t.Errorf("warnings on the console:\n%s", log)
		}

		if out := mustRun(t, "", "sgdisk", "-v", disk); !strings.Contains(out, "No problems found") {
			t.Errorf("sgdisk -v after first boot:\n%s", out)
		}
		first, last := partSectors(t, disk, 9)
		diskSectors := int64(128 << 20 / 512)
		if last < diskSectors-34-2048 || last > diskSectors-34 {
			t.Errorf("ROOT ends at sector %d, want within 1 MiB of the disk's last usable sector %d", last, diskSectors-34)
		}
		root := filepath.Join(dir, "root.ext4")
		mustRun(t, "", "dd", "if="+disk, "of="+root, "bs=512", fmt.Sprintf("skip=%d", first), fmt.Sprintf("count=%d", last-first+1), "status=none")
		mustRun(t, "", "e2fsck", "-fn", root)
		info := mustRun(t, "", "dumpe2fs", "-h", root)
		bc := regexp.MustCompile(`Block count:\s+(\d+)`).FindStringSubmatch(info)
		bs := regexp.MustCompile(`Block size:\s+(\d+)`).FindStringSubmatch(info)
		if bc == nil || bs == nil {
			t.Fatalf("dumpe2fs -h:\n%s", info)
		}
		blocks, _ := strconv.ParseInt(bc[1], 10, 64)
		size, _ := strconv.ParseInt(bs[1], 10, 64)
		if blocks*size != (last-first+1)*512 {
			t.Errorf("ROOT ext4 is %d bytes, its partition %d", blocks*size, (last-first+1)*512)
		}
	})

	t.Run("second boot", func(t *testing.T) {
		log := boot(t, vmlinuz, initrd, disk, cmdline+" pith.usrhash="+rootHash)
		expectInOrder(t, log, `mounted ROOT`, `mounted USR-A \(/dev/vda3, PARTUUID=\S+\) squashfs ro at /sysroot/usr verified by dm-verity\r?\n`, `switching root`,
			`PITH-TEST: etc.pith-test=hello etc`, `PITH-TEST: mount /usr=/dev/(dm-0|mapper/usr) squashfs ro`, `PITH-TEST: done`)
		for _, s := range []string{"first boot", "grew ROOT", "moved the backup GPT"} {
			if strings.Contains(log, s) {
				t.Errorf("second boot printed %q: first-boot work must happen once", s)
			}
		}
	})

	// USR is never mounted unverified, except on a debug image asked to.
	debugInitrd := filepath.Join(dir, "initrd-debug")
	if _, err := Build(context.Background(), Options{
		KernelVersion: version, ModulesDir: modules, Out: debugInitrd, InitBinary: initBin,
		CacheDir: pithCache(t), Log: t.Logf, AllowUnverifiedUSR: true,
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, initrd, args, want string
	}{
		{"no usrhash is refused", initrd, "",
			`pith-init: FAILED: verifying USR with dm-verity \(/dev/vda3\): no pith.usrhash= root hash on the kernel line: refusing to mount /usr unverified`},
		{"empty usrhash (no verity-<slot>.cfg) is refused", initrd, " pith.usrhash=",
			`pith-init: FAILED: kernel command line: pith.usrhash= is empty: the boot loader has no dm-verity root hash for this slot`},
		{"wrong usrhash is refused", initrd, " pith.usrhash=" + strings.Repeat("ab", 32),
			`pith-init: FAILED: verifying USR with dm-verity \(/dev/vda3\): verity: data or hash tree do not match the root hash: the tree's root hash is ` + rootHash + `, the expected one (ab)+: pith.usrhash does not belong to this USR`},
		{"pith.verity=off is refused on a normal image", initrd, " pith.usrhash=" + rootHash + " pith.verity=off",
			`pith-init: FAILED: verifying USR with dm-verity \(/dev/vda3\): pith.verity=off, but this image was not built to allow an unverified /usr`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := boot(t, vmlinuz, tc.initrd, disk, cmdline+tc.args)
			expectInOrder(t, log, tc.want, `rebooting in 10s`)
			if strings.Contains(log, "PITH-TEST") || strings.Contains(log, "mounted USR") {
				t.Error("booted on despite the failure")
			}
		})
	}
	t.Run("pith.verity=off on a debug image", func(t *testing.T) {
		log := boot(t, vmlinuz, debugInitrd, disk, cmdline+" pith.usrhash="+rootHash+" pith.verity=off")
		expectInOrder(t, log, `WARNING: USR is mounted WITHOUT dm-verity \(pith.verity=off on the kernel line, allowed by this debug image's /etc/pith/allow-unverified-usr\)`,
			`mounted USR-A \(/dev/vda3, PARTUUID=\S+\) squashfs ro at /sysroot/usr UNVERIFIED \(debug\)`,
			`PITH-TEST: mount /usr=/dev/vda3 squashfs ro`, `PITH-TEST: done`)
	})

	// A block changed after the build: the kernel restarts the machine the
	// moment it reads it (restart_on_corruption), so its data is never used.
	t.Run("corrupted USR restarts the machine", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "disk.img")
		mustRun(t, "", "cp", "--sparse=always", disk, bad)
		f, err := os.OpenFile(bad, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		usrPart := offsetRW{f, 1 << 20}
		end, err := verity.FSEnd(usrPart)
		if err != nil {
			t.Fatal(err)
		}
		// Every data block but the superblock's: whatever the kernel reads
		// after mounting is corrupted.
		junk := bytes.Repeat([]byte{0xa5}, verity.BlockSize)
		for off := int64(verity.BlockSize); off < end; off += verity.BlockSize {
			usrPart.WriteAt(junk, off)
		}
		f.Close()
		log := boot(t, vmlinuz, initrd, bad, cmdline+" pith.usrhash="+rootHash)
		expectInOrder(t, log, `dm-verity: /dev/(dm-0|mapper/usr) checks /dev/vda3`,
			`device-mapper: verity: \S+: (data|metadata) block \d+ is corrupted`,
			`Restarting system with command 'dm-verity device corrupted'`)
		if strings.Contains(log, "PITH-TEST") {
			t.Error("the fake systemd ran from a corrupted USR")
		}
	})

	t.Run("missing USR drops to the debug shell", func(t *testing.T) {
		bad := strings.Replace(cmdline, strings.ToLower(bootUsrUUID), "00000000-0000-0000-0000-0000000000ab", 1)
		log := boot(t, vmlinuz, initrd, disk, bad+" pith.debug pith.wait=2s",
			"echo SHELL-$((40+2))", "ls /bbin/modprobe", "exit")
		expectInOrder(t, log,
			`waiting up to 2s for PARTUUID=00000000-0000-0000-0000-0000000000AB`,
			`pith-init: FAILED: finding USR \(PARTUUID=00000000-0000-0000-0000-0000000000AB\): .* did not appear within 2s \(disks seen: vda\)`,
			`starting the emergency shell`,
			`\nSHELL-42\r?\n`, // the shell's arithmetic, not the echoed input
			`\nmodprobe\r?\n`)
	})
}
