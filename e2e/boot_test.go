package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// TestBoot: the image boots on BIOS and on UEFI to a running system, /usr is
// USR-A read-only, and / is ROOT grown to fill a disk larger than the image.
func TestBoot(t *testing.T) {
	t.Parallel() // each firmware's subtest holds its own VM slot
	m, err := manifest.Read(filepath.Join(builtImageDir(t), manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	usrA, _ := m.Partition(layout.LabelUSRA)
	usrVerity := usrA.Verity
	if usrVerity == nil {
		t.Fatal("the image manifest has no dm-verity record for USR-A")
	}
	for _, fw := range []string{vm.BIOS, vm.UEFI} {
		t.Run(fw, func(t *testing.T) {
			NeedVMs(t, 1, 3*time.Minute)
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
			if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=a") || !strings.Contains(cl+" ", " pith.usrhash="+usrVerity.RootHash+" ") {
				t.Errorf("kernel line has no pith.slot=a or not the manifest's root hash %s: %s", usrVerity.RootHash, cl)
			}

			// /usr: read-only, from USR-A (directly or through dm-verity).
			if opts := strings.Split(n.Run("findmnt -n -o OPTIONS /usr"), ","); opts[0] != "ro" {
				t.Errorf("/usr mount options %v: want ro", opts)
			}
			// lsblk -s does not follow the dm device the initramfs made
			// (udev never saw it): sysfs names the partition under it.
			usrSrc := n.Run("findmnt -n -o SOURCE /usr")
			under := n.Run("ls /sys/class/block/" + filepath.Base(usrSrc) + "/slaves")
			if labels := n.Run("lsblk -n -o PARTLABEL /dev/" + under); labels != "USR-A" {
				t.Errorf("/usr is %s on %s, which is not USR-A (partition label %q)", usrSrc, under, labels)
			}
			if r := n.Exec("sudo touch /usr/.pith-e2e"); r.ExitStatus == 0 {
				t.Error("root could write to /usr")
			}
			// ... through dm-verity with the manifest's root hash, which
			// restarts the machine on a corrupted block (issue 16).
			table := n.Run("sudo dmsetup table usr")
			status := n.Run("sudo dmsetup status usr")
			f := strings.Fields(table)
			if len(f) < 13 || f[2] != "verity" || f[11] != usrVerity.RootHash || f[12] != usrVerity.Salt || !strings.HasSuffix(table, " 1 restart_on_corruption") {
				t.Errorf("dmsetup table usr = %q, want a verity target with root hash %s, salt %s, restart_on_corruption", table, usrVerity.RootHash, usrVerity.Salt)
			}
			if sf := strings.Fields(status); len(sf) < 4 || sf[2] != "verity" || sf[3] != "V" {
				t.Errorf("dmsetup status usr = %q, want verity V (verified, no corruption seen)", status)
			}
			if !strings.HasSuffix(usrSrc, "/dm-0") && !strings.HasSuffix(usrSrc, "/mapper/usr") {
				t.Errorf("/usr is mounted from %s, not the dm-verity device", usrSrc)
			}
			t.Logf("/usr: %s; dmsetup table usr: %s", usrSrc, table)

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
