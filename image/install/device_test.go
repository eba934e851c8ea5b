package install

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCheckUnused runs checkUnused against a fake sysfs and mountinfo:
// device 8:0 with partitions 8:1 and 8:2.
func TestCheckUnused(t *testing.T) {
	tests := []struct {
		name, mountinfo, holder, want string
	}{
		{name: "nothing mounted", mountinfo: "22 1 0:21 / /proc rw - proc proc rw\n"},
		{name: "partition mounted", mountinfo: "40 1 8:2 / /mnt/my\\040data rw - ext4 /dev/sda2 rw\n", want: "/dev/sda2 is mounted at /mnt/my data"},
		{name: "whole disk mounted", mountinfo: "40 1 8:0 / /srv rw - ext4 /dev/sda rw\n", want: "/dev/sda is mounted at /srv"},
		{name: "another disk mounted", mountinfo: "40 1 8:16 / /srv rw - ext4 /dev/sdb rw\n"},
		{name: "partition held by dm", holder: "sda1", want: "held by dm-0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sys := sysPaths{mountinfo: filepath.Join(dir, "mountinfo"), swaps: filepath.Join(dir, "swaps"), sysBlock: filepath.Join(dir, "block")}
			os.WriteFile(sys.mountinfo, []byte(tc.mountinfo), 0o644)
			os.WriteFile(sys.swaps, []byte("Filename Type Size Used Priority\n"), 0o644)
			disk := filepath.Join(sys.sysBlock, "8:0")
			for i, name := range []string{"sda1", "sda2"} {
				os.MkdirAll(filepath.Join(disk, name, "holders"), 0o755)
				os.WriteFile(filepath.Join(disk, name, "dev"), []byte("8:"+string(rune('1'+i))+"\n"), 0o644)
				os.WriteFile(filepath.Join(disk, name, "partition"), []byte("1\n"), 0o644)
				// sysfs links 8:N to the partition's directory.
				os.Symlink(filepath.Join(disk, name), filepath.Join(sys.sysBlock, "8:"+string(rune('1'+i))))
			}
			if tc.holder != "" {
				os.MkdirAll(filepath.Join(disk, tc.holder, "holders", "dm-0"), 0o755)
			}
			err := sys.checkUnused("/dev/sda", unix.Mkdev(8, 0))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRefusesMountedLoopDevice installs onto a real loop device whose
// filesystem is mounted: refused, the device untouched.
func TestRefusesMountedLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mount (make unit runs as root in CI)")
	}
	needTools(t, "losetup", "mkfs.ext4")
	f := newFixture(t, "qemu")
	back := blankDisk(t, 2*f.size)
	run(t, "mkfs.ext4", "-q", "-F", back)
	out, err := exec.Command("losetup", "--find", "--show", back).Output()
	if err != nil {
		t.Skipf("no loop device available: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	before := fileSum(t, back)
	mnt := t.TempDir()
	// Read-only: a read-write mount itself writes the superblock.
	if err := unix.Mount(loop, mnt, "ext4", unix.MS_RDONLY, "noload"); err != nil {
		t.Fatalf("mount %s: %v", loop, err)
	}
	_, err = Install(context.Background(), Options{Device: loop, Image: f.img, Force: true})
	unix.Unmount(mnt, 0)
	if err == nil || !strings.Contains(err.Error(), "is mounted at "+mnt) {
		t.Fatalf("Install onto mounted %s: %v, want a refusal naming %s", loop, err, mnt)
	}
	if fileSum(t, back) != before {
		t.Errorf("the mounted device was written")
	}
	// Unmounted, the same device takes the image.
	res, err := Install(context.Background(), Options{Device: loop, Image: f.img, Force: true, UserData: []byte(userData)})
	if err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, f, back, 2*f.size, res, OEMUserData, userData)
}
