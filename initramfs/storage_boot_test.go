package initramfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bootUntil boots like boot, with the user-data in fw_cfg and a second
// raw disk with serial "data1", and ends QEMU once the console shows stop
// (a boot that stops for good never powers off).
func bootUntil(t *testing.T, kernel, initrd, cmdline, stop, userData, disk, data string) string {
	t.Helper()
	args := []string{"-accel", "tcg", "-m", "1024", "-smp", "1",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-net", "none",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0,115200n8 panic=10 no_timer_check " + cmdline}
	args = append(args, "-drive", "file="+disk+",if=virtio,format=raw",
		"-drive", "file="+data+",if=none,id=data1,format=raw", "-device", "virtio-blk-pci,drive=data1,serial=data1")
	if userData != "" {
		args = append(args, "-fw_cfg", "name=opt/org.pith/user-data,file="+userData)
	}
	// A hang guard, not a speed check: such a boot takes seconds even
	// under TCG on a loaded machine; a guest that never shows stop is
	// ended here with its console rather than at go test's -timeout.
	ctx, cancel := context.WithTimeout(context.Background(), bootGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	con := &console{}
	con.cond = sync.NewCond(&con.mu)
	cmd.Stdout, cmd.Stderr = con, con
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	go func() {
		if con.waitCount(stop, 1) {
			cmd.Process.Kill()
		}
	}()
	_ = cmd.Wait()
	con.mu.Lock()
	con.done = true
	con.cond.Broadcast()
	log := con.buf.String()
	con.mu.Unlock()
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "pith-init") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("QEMU was still running after %s without %q (killed); console:\n%s", bootGuard, stop, log)
	}
	return log
}

// bootGuard ends a hung storage boot.
const bootGuard = 10 * time.Minute

// TestBootQEMUStorage: Ignition storage in the initramfs fails closed. The
// test USR has no mkfs tools, so the first boot partitions the second disk
// (read from fw_cfg, through go-diskfs) and then fails making the
// filesystem: the boot stops with one clear line. The next boot, without
// user-data, stops too, as ROOT says a first boot was cut half-way.
func TestBootQEMUStorage(t *testing.T) {
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
	if _, err := Build(context.Background(), Options{
		KernelVersion: version, ModulesDir: modules, Out: initrd, InitBinary: initBin,
		CacheDir: pithCache(t), Log: t.Logf, FsckFrom: "/usr",
	}); err != nil {
		t.Fatal(err)
	}
	disk, rootHash := makeBootDisk(t, dir, systemd)
	data := filepath.Join(dir, "vdb.img")
	mustRun(t, "", "truncate", "-s", "64M", data)
	ud := filepath.Join(dir, "user-data")
	cfg := `{"ignition":{"version":"3.4.0"},"storage":{
  "disks":[{"device":"/dev/disk/by-id/virtio-data1","wipeTable":true,"partitions":[{"label":"e2edata"}]}],
  "filesystems":[{"device":"/dev/disk/by-partlabel/e2edata","format":"ext4","path":"/srv"}]}}`
	if err := os.WriteFile(ud, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmdline := "pith.slot=a pith.usr=PARTUUID=" + bootUsrUUID + " pith.root=PARTUUID=" + bootRootUUID + " pith.usrhash=" + rootHash
	const stopped = "the boot stops here (not rebooting)"

	log := bootUntil(t, vmlinuz, initrd, cmdline, stopped, ud, disk, data)
	expectInOrder(t, log,
		`first boot: created the ROOT skeleton`,
		`Ignition storage: 1 disks, 0 arrays, 0 LUKS volumes, 1 filesystems from fw_cfg`,
		`Ignition storage: partition created disk=/dev/disk/by-id/virtio-data1 number=1 label=e2edata size_mib=62 start_mib=1`,
		`pith-init: FAILED: Ignition storage \(applying\) failed, the first boot stops here as Ignition does: /dev/disk/by-partlabel/e2edata: blkid -p /dev/vd[ab]1: blkid is not in this image's /usr`,
		`pith-init: the boot stops here \(not rebooting\)`)
	if strings.Contains(log, "switching root") {
		t.Error("switched root after the storage stage failed")
	}
	if out := mustRun(t, "", "sgdisk", "-p", data); !strings.Contains(out, "e2edata") {
		t.Errorf("the second disk has no e2edata partition:\n%s", out)
	}

	log = bootUntil(t, vmlinuz, initrd, cmdline, stopped, "", disk, data)
	expectInOrder(t, log,
		`pith-init: FAILED: Ignition storage: a previous first boot stopped while partitioning or formatting .*half-provisioned`,
		`pith-init: the boot stops here \(not rebooting\)`)
	if strings.Contains(log, "Ignition storage: 1 disks") || strings.Contains(log, "switching root") {
		t.Error("the second boot applied storage again or booted on")
	}
}
