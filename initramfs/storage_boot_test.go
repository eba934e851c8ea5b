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
// raw disk with serial "data1" (and extra QEMU arguments), and ends QEMU
// once the console shows stop
// (a boot that stops for good never powers off).
func bootUntil(t *testing.T, kernel, initrd, cmdline, stop, userData, disk, data string, extra ...string) string {
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
	args = append(args, extra...)
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

// storageInitrd checks for the tools (and more), builds pith-init and the
// fake systemd into dir, and an initramfs of them for the Debian kernel,
// with the host's e2fsck: what the storage boots share.
func storageInitrd(t *testing.T, dir string, more ...string) (vmlinuz, initrd, systemd string) {
	t.Helper()
	for _, tool := range append([]string{"qemu-system-x86_64", "sgdisk", "mksquashfs", "mkfs.ext4", "e2fsck", "apt-get", "dpkg-deb"}, more...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps installs it): %v", tool, err)
		}
	}
	vmlinuz, modules, version := debianKernel(t)
	initBin := filepath.Join(dir, "pith-init")
	goBuild(t, initBin, "./cmd/pith-init")
	systemd = filepath.Join(dir, "fakesystemd")
	goBuild(t, systemd, "./testdata/fakesystemd")
	initrd = filepath.Join(dir, "initrd")
	if _, err := Build(context.Background(), Options{
		KernelVersion: version, ModulesDir: modules, Out: initrd, InitBinary: initBin,
		CacheDir: pithCache(t), Log: t.Logf, FsckFrom: "/usr",
	}); err != nil {
		t.Fatal(err)
	}
	return vmlinuz, initrd, systemd
}

// bootGuard ends a hung storage boot.
const bootGuard = 10 * time.Minute

// TestBootQEMUStorage: Ignition storage in the initramfs fails closed. The
// test USR has no mkfs tools, so the first boot partitions the second disk
// (read from fw_cfg, through go-diskfs) and then fails making the
// filesystem: the boot stops with one clear line. The next boot, without
// user-data, stops too, as ROOT says a first boot was cut half-way.
func TestBootQEMUStorage(t *testing.T) {
	t.Parallel() // each boots its own QEMU: two at a time use both cores
	dir := t.TempDir()
	vmlinuz, initrd, systemd := storageInitrd(t, dir)
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

// TestBootQEMUStorageConfigDrive: with no fw_cfg user-data, the first
// boot takes its Ignition config from a config drive (an ISO 9660
// config-2 on an IDE CD-ROM, as OpenStack attaches one) and grows the
// data disk's partition in place (resize, sizeMiB 0): same start, GUID
// and label, the bytes on it kept, and boots on.
func TestBootQEMUStorageConfigDrive(t *testing.T) {
	t.Parallel() // each boots its own QEMU: two at a time use both cores
	dir := t.TempDir()
	vmlinuz, initrd, systemd := storageInitrd(t, dir, "xorriso")
	disk, rootHash := makeBootDisk(t, dir, systemd)
	data := filepath.Join(dir, "vdb.img")
	mustRun(t, "", "truncate", "-s", "64M", data)
	const guid = "0B1E2D3C-4A5B-4C6D-8E7F-9A0B1C2D3E4F"
	mustRun(t, "", "sgdisk", "-n", "1:2048:+20M", "-c", "1:e2edata", "-u", "1:"+guid, data)
	// Bytes on the partition that the resize must keep.
	const mark = "pith resize keeps this"
	mustRun(t, "", "sh", "-c", "printf '"+mark+"' | dd of="+data+" bs=512 seek=4096 conv=notrunc status=none")

	cd := filepath.Join(dir, "cd")
	cfg := `{"ignition":{"version":"3.4.0"},"storage":{
  "disks":[{"device":"/dev/disk/by-id/virtio-data1","partitions":[{"number":1,"label":"e2edata","resize":true,"sizeMiB":0}]}]}}`
	if err := os.MkdirAll(filepath.Join(cd, "openstack", "latest"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cd, "openstack", "latest", "user_data"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(dir, "config-2.iso")
	mustRun(t, "", "xorriso", "-as", "mkisofs", "-quiet", "-V", "config-2", "-J", "-R", "-o", iso, cd)
	cmdline := "pith.slot=a pith.usr=PARTUUID=" + bootUsrUUID + " pith.root=PARTUUID=" + bootRootUUID + " pith.usrhash=" + rootHash

	log := bootUntil(t, vmlinuz, initrd, cmdline, "PITH-TEST: done", "", disk, data, "-drive", "file="+iso+",if=ide,media=cdrom,format=raw,readonly=on")
	expectInOrder(t, log,
		`first boot: created the ROOT skeleton`,
		`Ignition: config from config drive /dev/sr0`,
		`Ignition storage: 1 disks, 0 arrays, 0 LUKS volumes, 0 filesystems from config drive /dev/sr0`,
		`Ignition storage: partition grown in place disk=/dev/disk/by-id/virtio-data1 number=1 label=e2edata from_mib=20 to_mib=62`,
		`Ignition storage: done`,
		`switching root`,
		`PITH-TEST: done`)
	out := mustRun(t, "", "sgdisk", "-i", "1", data)
	for _, want := range []string{"First sector: 2048 ", "Last sector: 131038 ", "Partition unique GUID: " + guid, "Partition name: 'e2edata'"} {
		if !strings.Contains(out, want) {
			t.Errorf("partition 1 after the resize lacks %q:\n%s", want, out)
		}
	}
	if out := mustRun(t, "", "sgdisk", "-v", data); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	b := make([]byte, len(mark))
	f, err := os.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, 4096*512); err != nil || string(b) != mark {
		t.Errorf("the partition's bytes after the resize: %q, %v; want %q", b, err, mark)
	}
}
