package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pith-os/pith/vm"
)

// TestBoot: the image boots on BIOS and on UEFI to a running system, /usr is
// USR-A read-only, and / is ROOT grown to fill a disk larger than the image.
func TestBoot(t *testing.T) {
	for _, fw := range []string{vm.BIOS, vm.UEFI} {
		t.Run(fw, func(t *testing.T) {
			t.Parallel()
			const disk = 5 << 30 // the image is 4 GiB: growth must show
			c := Boot(t, Options{Firmware: fw, DiskSize: disk})
			n := c.Nodes[0]
			login := n.Up()
			state := strings.TrimSpace(string(n.Exec("systemctl is-system-running --wait").Stdout))
			// The second figure is when the test saw it (after SSH came up);
			// systemd-analyze says when the guest itself got there.
			t.Logf("MEASURE firmware=%s accel=%s qemu-start->login-prompt=%s qemu-start->is-system-running(%s) observed=%s; guest: %s",
				fw, c.Accel.Name, login.Round(100e6), state, n.Since().Round(100e6), n.Exec("systemd-analyze time").Stdout)
			if state == "degraded" {
				t.Logf("degraded by:\n%s", n.Exec("systemctl --failed --no-pager --no-legend").Stdout)
			}
			if state != "running" && state != "degraded" {
				t.Errorf("is-system-running = %q; failed units:\n%s", state, n.Exec("systemctl --failed --no-pager").Stdout)
			}
			for _, line := range strings.Split(n.Run("systemctl list-units --failed --plain --no-legend --no-pager"), "\n") {
				if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "pith") {
					t.Errorf("failed Pith unit %s:\n%s", f[0], n.Exec("systemctl status --no-pager -l "+f[0]).Stdout)
				}
			}
			efi := n.Exec("test -d /sys/firmware/efi").ExitStatus == 0
			if efi != (fw == vm.UEFI) {
				t.Errorf("booted with firmware %s but /sys/firmware/efi present=%v", fw, efi)
			}
			if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=a") {
				t.Errorf("kernel line has no pith.slot=a: %s", cl)
			}

			// /usr: read-only, from USR-A (directly or through dm-verity).
			if opts := strings.Split(n.Run("findmnt -n -o OPTIONS /usr"), ","); opts[0] != "ro" {
				t.Errorf("/usr mount options %v: want ro", opts)
			}
			usrSrc := n.Run("findmnt -n -o SOURCE /usr")
			if labels := n.Run("lsblk -n -s -o PARTLABEL " + usrSrc); !strings.Contains(labels, "USR-A") {
				t.Errorf("/usr is %s, which is not on USR-A (partition labels: %q)", usrSrc, labels)
			}
			if r := n.Exec("sudo touch /usr/.pith-e2e"); r.ExitStatus == 0 {
				t.Error("root could write to /usr")
			}

			// /: ROOT, ext4, read-write, its partition and filesystem grown to the disk's end.
			rootSrc := n.Run("findmnt -n -o SOURCE /")
			if l := n.Run("lsblk -n -o PARTLABEL " + rootSrc); l != "ROOT" {
				t.Errorf("/ is %s labelled %q, want ROOT", rootSrc, l)
			}
			if fs, opts := n.Run("findmnt -n -o FSTYPE /"), strings.Split(n.Run("findmnt -n -o OPTIONS /"), ","); fs != "ext4" || opts[0] != "rw" {
				t.Errorf("/ is %s mounted %v, want ext4 rw", fs, opts)
			}
			num := func(cmd string) int64 {
				v, err := strconv.ParseInt(strings.TrimSpace(n.Run(cmd)), 10, 64)
				if err != nil {
					t.Fatalf("%s: %v", cmd, err)
				}
				return v
			}
			kname := n.Run("lsblk -n -o KNAME " + rootSrc)
			parent := n.Run("lsblk -n -o PKNAME " + rootSrc)
			diskBytes := num("lsblk -b -d -n -o SIZE /dev/" + parent)
			if diskBytes != disk {
				t.Errorf("disk %s is %d bytes, want %d", parent, diskBytes, int64(disk))
			}
			start, size := num("cat /sys/class/block/"+kname+"/start"), num("cat /sys/class/block/"+kname+"/size")
			// The last usable sector is 34 before the end (backup GPT); allow 1 MiB alignment.
			if end, last := start+size, diskBytes/512-34; end < last-2048 {
				t.Errorf("ROOT ends at sector %d, the disk's last usable is %d: not grown", end, last)
			}
			if fsBytes := num("df -B1 --output=size / | tail -1"); fsBytes < size*512*9/10 {
				t.Errorf("ROOT's filesystem is %d bytes on a %d byte partition: not grown", fsBytes, size*512)
			}
		})
	}
}

// slotStatus is `pithctl slot status --json`.
type slotStatus struct {
	Saved string `json:"saved_entry"`
	Next  string `json:"next_entry"`
	Slots []struct {
		Slot       string `json:"slot"`
		Version    string `json:"version"`
		Priority   int    `json:"priority"`
		Tries      int    `json:"tries"`
		Successful bool   `json:"successful"`
		Running    bool   `json:"running"`
	} `json:"slots"`
}

func (n *Node) slots() slotStatus {
	n.t.Helper()
	out := n.Run("sudo pithctl slot status --json")
	var st slotStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Slots) != 2 {
		n.t.Fatalf("pithctl slot status --json: %v\n%s", err, out)
	}
	return st
}

// onESP is a root shell command running body (no single quotes) in the
// mounted EFI system partition.
func onESP(body string) string {
	return "sudo sh -c 'set -e; esp=$(mktemp -d); mount /dev/disk/by-partlabel/EFI-SYSTEM $esp; rc=0; " +
		"(cd $esp && " + body + ") || rc=$?; umount $esp; rmdir $esp; exit $rc'"
}

// TestRollback: a trial boot of a slot B whose kernel is broken comes back
// on slot A, and slot B is left failed (no tries left, not successful).
func TestRollback(t *testing.T) {
	c := Boot(t, Options{})
	n := c.Nodes[0]
	n.Up()
	n.Run(onESP("head -c 4M /dev/urandom > pith/vmlinuz-b && cp pith/initrd-a pith/initrd-b"))
	n.Run("sudo pithctl slot trial b")
	if st := n.slots(); st.Next != "b" || st.Slots[1].Tries != 1 {
		t.Fatalf("trial of b not set: %+v", st)
	}
	n.Reboot()
	boot := n.ConsoleText()
	if !strings.Contains(boot, "Loading Pith slot B") {
		t.Error("GRUB never tried slot B (no \"Loading Pith slot B\" on the console)")
	}
	n.WaitSSH()
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=a") {
		t.Fatalf("after the failed trial the node runs %s, want slot a", cl)
	}
	st := n.slots()
	t.Logf("after rollback:\n%s", n.Run("sudo pithctl slot status"))
	if b := st.Slots[1]; b.Tries != 0 || b.Successful {
		t.Errorf("slot B after its failed trial: tries %d successful %v, want 0 and false", b.Tries, b.Successful)
	}
	if st.Saved != "a" || st.Next != "" || !st.Slots[0].Running {
		t.Errorf("after rollback: saved_entry=%q next_entry=%q, A running %v; want a, empty, true", st.Saved, st.Next, st.Slots[0].Running)
	}
}

// usrWithVersion extracts the image's USR-A squashfs, sets os-release's
// VERSION_ID/VERSION to version and packs it again: slot B's content for
// an "update" to a new version without a release server.
func usrWithVersion(t *testing.T, version string) string {
	t.Helper()
	img := filepath.Join(os.Getenv("PITH_E2E_IMAGE_DIR"), "pith.img")
	info, err := exec.Command("sgdisk", "-i", "3", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i 3 %s: %v\n%s", img, err, info)
	}
	m := regexp.MustCompile(`First sector: (\d+)`).FindSubmatch(info)
	if m == nil {
		t.Fatalf("no first sector for USR-A in:\n%s", info)
	}
	first, _ := strconv.ParseInt(string(m[1]), 10, 64)
	dir := t.TempDir()
	root, out := filepath.Join(dir, "usr"), filepath.Join(dir, "usr.squashfs")
	if b, err := exec.Command("unsquashfs", "-n", "-q", "-o", strconv.FormatInt(first*512, 10), "-d", root, img).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs USR-A of %s: %v\n%s", img, err, b)
	}
	osr := filepath.Join(root, "lib", "os-release")
	b, err := os.ReadFile(osr)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "VERSION_ID="):
			l = "VERSION_ID=" + version
		case strings.HasPrefix(l, "VERSION="):
			l = `VERSION="` + version + `"`
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(osr, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("mksquashfs", root, out, "-noappend", "-comp", "zstd", "-no-progress", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, b)
	}
	return out
}

// TestSlotBTrialMarkedGood: a good slot B (a copy of A with a new version
// string) trial-boots, is marked good, and stays the default on the next
// reboot.
func TestSlotBTrialMarkedGood(t *testing.T) {
	c := Boot(t, Options{})
	n := c.Nodes[0]
	usr := usrWithVersion(t, "0.1.0-e2e-b")
	n.Up()
	f, err := os.Open(usr)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n.RunInput("sudo dd of=/dev/disk/by-partlabel/USR-B bs=1M conv=fsync status=none", f)
	n.Run(onESP("cp pith/vmlinuz-a pith/vmlinuz-b && cp pith/initrd-a pith/initrd-b"))
	n.Run("sudo pithctl slot trial b")
	n.Reboot()
	n.WaitSSH()
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=b") {
		t.Fatalf("trial boot runs %s, want slot b", cl)
	}
	if labels := n.Run("lsblk -n -s -o PARTLABEL $(findmnt -n -o SOURCE /usr)"); !strings.Contains(labels, "USR-B") {
		t.Errorf("/usr of the trial boot is not on USR-B: %q", labels)
	}
	if v := n.Run(". /usr/lib/os-release && echo $VERSION_ID"); v != "0.1.0-e2e-b" {
		t.Errorf("slot B runs version %q, want 0.1.0-e2e-b", v)
	}
	n.Run("sudo pithctl slot mark-good")
	st := n.slots()
	t.Logf("after mark-good:\n%s", n.Run("sudo pithctl slot status"))
	if b := st.Slots[1]; st.Saved != "b" || st.Next != "" || !b.Successful || !b.Running || b.Version != "0.1.0-e2e-b" {
		t.Fatalf("after mark-good: %+v", st)
	}
	n.Reboot()
	n.WaitSSH()
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=b") {
		t.Errorf("after mark-good and a reboot the node runs %s, want slot b", cl)
	}
}
