package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// checkBooted is what every fresh boot of an image must show, run on a
// machine that boots anyway (TestFirstBootOEM's on BIOS, TestEC2's and
// TestARM64's on UEFI): a running system with no failed Pith unit, the
// image's masked units kept out of the boot, the first-boot host keys
// whole, the RSA host key left to its timer, the firmware it was booted
// with, /usr read-only from USR-A through dm-verity with the manifest's
// root hash (restart_on_corruption, issue 16), and / the ROOT
// partition, ext4 read-write, grown with its filesystem to the end of a
// disk (disk bytes) larger than the image. sh runs a command as core and
// returns its trimmed stdout and exit status.
func checkBooted(t *testing.T, fw string, imageDir string, disk int64, sh func(cmd string) (string, int)) {
	t.Helper()
	m, err := manifest.Read(filepath.Join(imageDir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	usrA, _ := m.Partition(layout.LabelUSRA)
	usrVerity := usrA.Verity
	if usrVerity == nil {
		t.Fatal("the image manifest has no dm-verity record for USR-A")
	}
	run := func(cmd string) string {
		t.Helper()
		out, code := sh(cmd)
		if code != 0 {
			t.Fatalf("%q exited %d: %s", cmd, code, out)
		}
		return out
	}
	state, _ := sh("systemctl is-system-running --wait")
	analyze, _ := sh("systemd-analyze time")
	t.Logf("MEASURE firmware=%s is-system-running(%s); guest: %s", fw, state, analyze)
	if state == "degraded" {
		failed, _ := sh("systemctl --failed --no-pager --no-legend")
		t.Logf("degraded by:\n%s", failed)
	}
	if state != "running" && state != "degraded" {
		failed, _ := sh("systemctl --failed --no-pager")
		t.Errorf("is-system-running = %q; failed units:\n%s", state, failed)
	}
	for _, line := range strings.Split(run("systemctl list-units --failed --plain --no-legend --no-pager"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "pith") {
			st, _ := sh("systemctl status --no-pager -l " + f[0])
			t.Errorf("failed Pith unit %s:\n%s", f[0], st)
		}
	}
	// What the image masks stays masked and out of the boot (repart's
	// Wants loaded the loop module), and the RSA host key waits for its
	// timer, 10 minutes into the boot (TestFirstBootOEM starts it).
	for _, u := range []string{"systemd-repart.service", "modprobe@drm.service"} {
		if st, _ := sh("systemctl show -p LoadState --value " + u); st != "masked" {
			t.Errorf("%s is %s, want masked", u, st)
		}
	}
	if st, _ := sh("systemctl show -p InactiveExitTimestampMonotonic --value modprobe@loop.service"); st != "0" {
		t.Errorf("modprobe@loop.service ran in this boot (InactiveExitTimestampMonotonic %s)", st)
	}
	if l, _ := sh("readlink /etc/systemd/system-generators/systemd-gpt-auto-generator"); l != "/dev/null" {
		t.Errorf("the gpt-auto generator is not masked (%q)", l)
	}
	// The first-boot host keys went through their temporary names.
	if st, _ := sh("sudo ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key; sudo ssh-keygen -l -f /etc/ssh/ssh_host_ecdsa_key; ls -A /etc/ssh | grep '^\\.ssh_host'"); !strings.Contains(st, "(ED25519)") || !strings.Contains(st, "(ECDSA)") || strings.Contains(st, ".ssh_host") {
		t.Errorf("the first-boot host keys: %q, want an Ed25519 and an ECDSA key and no temporary files", st)
	}
	if st, _ := sh("systemctl is-active pith-ssh-keygen-rsa.timer"); st != "active" {
		t.Errorf("pith-ssh-keygen-rsa.timer is %s, want active", st)
	}
	if _, code := sh(`test "$(cut -d. -f1 /proc/uptime)" -ge 540 || test ! -e /etc/ssh/ssh_host_rsa_key`); code != 0 {
		t.Errorf("the RSA host key was made before its timer")
	}
	if _, code := sh("test -d /sys/firmware/efi"); (code == 0) != (fw == vm.UEFI) {
		t.Errorf("booted with firmware %s but /sys/firmware/efi present=%v", fw, code == 0)
	}
	if cl := run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=a") || !strings.Contains(cl+" ", " pith.usrhash="+usrVerity.RootHash+" ") {
		t.Errorf("kernel line has no pith.slot=a or not the manifest's root hash %s: %s", usrVerity.RootHash, cl)
	}

	// /usr: read-only, from USR-A (directly or through dm-verity).
	if opts := strings.Split(run("findmnt -n -o OPTIONS /usr"), ","); opts[0] != "ro" {
		t.Errorf("/usr mount options %v: want ro", opts)
	}
	// lsblk -s does not follow the dm device the initramfs made
	// (udev never saw it): sysfs names the partition under it.
	usrSrc := run("findmnt -n -o SOURCE /usr")
	under := run("ls /sys/class/block/" + filepath.Base(usrSrc) + "/slaves")
	if labels := run("lsblk -n -o PARTLABEL /dev/" + under); labels != "USR-A" {
		t.Errorf("/usr is %s on %s, which is not USR-A (partition label %q)", usrSrc, under, labels)
	}
	if _, code := sh("sudo touch /usr/.pith-e2e"); code == 0 {
		t.Error("root could write to /usr")
	}
	// ... through dm-verity with the manifest's root hash, which
	// restarts the machine on a corrupted block (issue 16).
	table := run("sudo dmsetup table usr")
	status := run("sudo dmsetup status usr")
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
	rootSrc := run("findmnt -n -o SOURCE /")
	if l := run("lsblk -n -o PARTLABEL " + rootSrc); l != "ROOT" {
		t.Errorf("/ is %s labelled %q, want ROOT", rootSrc, l)
	}
	if fs, opts := run("findmnt -n -o FSTYPE /"), strings.Split(run("findmnt -n -o OPTIONS /"), ","); fs != "ext4" || opts[0] != "rw" {
		t.Errorf("/ is %s mounted %v, want ext4 rw", fs, opts)
	}
	num := func(cmd string) int64 {
		v, err := strconv.ParseInt(run(cmd), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return v
	}
	kname := run("lsblk -n -o KNAME " + rootSrc)
	parent := run("lsblk -n -o PKNAME " + rootSrc)
	diskBytes := num("lsblk -b -d -n -o SIZE /dev/" + parent)
	if diskBytes != disk {
		t.Errorf("disk %s is %d bytes, want %d", parent, diskBytes, disk)
	}
	start, size := num("cat /sys/class/block/"+kname+"/start"), num("cat /sys/class/block/"+kname+"/size")
	// The last usable sector is 34 before the end (backup GPT); allow 1 MiB alignment.
	if end, last := start+size, diskBytes/512-34; end < last-2048 {
		t.Errorf("ROOT ends at sector %d, the disk's last usable is %d: not grown", end, last)
	}
	if fsBytes := num("df -B1 --output=size / | tail -1"); fsBytes < size*512*9/10 {
		t.Errorf("ROOT's filesystem is %d bytes on a %d byte partition: not grown", fsBytes, size*512)
	}
}

// sh runs cmd as core with the harness's key (checkBooted's sh).
func (n *Node) sh(cmd string) (string, int) {
	n.t.Helper()
	r := n.Exec(cmd)
	return strings.TrimSpace(string(r.Stdout)), r.ExitStatus
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
