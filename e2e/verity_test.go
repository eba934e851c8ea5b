package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// verityCorrupted is the kernel's dm-verity line for a block that does not
// match its hash (drivers/md/dm-verity-target.c, verity_handle_err).
var verityCorrupted = regexp.MustCompile(`device-mapper: verity: \S+: (data|metadata) block \d+ is corrupted`)

// checkTamperedSlotFallsBack is issue 16's corruption test on the real
// GRUB, kernel and initramfs, on a node running slot good whose other slot
// holds the same USR (written and verified by the update agent): the other
// slot gets good's kernel, initrd and root hash and becomes the saved
// (default) slot, then blocks across its USR are overwritten with random
// data and the machine reboots. dm-verity must report the corruption and
// restart the machine (restart_on_corruption) before tampered data is
// used, GRUB must count three such boots and fall back to good, and the
// node must come up there. usr is that USR's dm-verity record. One reboot
// (three short failed boots and a normal one).
func (n *Node) checkTamperedSlotFallsBack(good string, usr *manifest.Verity) {
	t := n.t
	t.Helper()
	bad := map[string]string{"a": "b", "b": "a"}[good]
	BAD := strings.ToUpper(bad)
	for _, f := range []string{"vmlinuz-", "initrd-", "verity-"} {
		ext := map[string]string{"verity-": ".cfg"}[f]
		n.Run(fmt.Sprintf("sudo cp /boot/pith/%s%s%s /boot/pith/%s%s%s", f, good, ext, f, bad, ext))
	}
	// The saved slot is bad, as if the machine had run it all along.
	n.Run(fmt.Sprintf("echo pith.slot=%s > /tmp/cmdline-%s && sudo pithctl slot mark-good --disk /dev/vda --cmdline /tmp/cmdline-%s", bad, bad, bad))
	if ss := n.slots(); ss.Saved != bad || ss.Next != "" {
		t.Fatalf("slot %s is not the saved slot: %+v", bad, ss)
	}
	// 4 KiB of random data at every MiB of the squashfs (block 0, its
	// superblock, stays: the kernel, not a mount error, must find it).
	mib := usr.DataSize >> 20
	start := time.Now()
	n.Run(fmt.Sprintf(`sudo sh -c 'for i in $(seq 1 %d); do dd if=/dev/urandom of=/dev/disk/by-partlabel/USR-%s bs=4096 seek=$((i*256)) count=1 conv=notrunc status=none || exit 1; done; sync'`, mib-1, BAD))
	t.Logf("USR-%s: 4 KiB changed at each of %d MiB in %s", BAD, mib-1, time.Since(start).Round(time.Second))

	n.MarkConsole()
	from := vm.Console{Path: n.M.SerialLog}.Size()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key, "sudo systemctl reboot")
	cancel()
	start = time.Now()
	n.WaitConsole(fmt.Sprintf("Pith slot %s failed to come up three times: falling back to slot %s", bad, good))
	fellBack := time.Since(start)
	n.WaitSSH()
	b, _ := vm.Console{Path: n.M.SerialLog}.ReadFrom(from)
	console := string(b)
	corrupt := verityCorrupted.FindAllString(console, -1)
	tries := strings.Count(console, "Loading Pith slot "+BAD+"...")
	// kernel_restart logs its reason.
	restarts := strings.Count(console, "Restarting system with command 'dm-verity device corrupted'")
	t.Logf("tampered USR-%s: %d boots of slot %s, %d dm-verity restarts, fell back after %s; kernel: %q", BAD, tries, bad, restarts, fellBack.Round(time.Second), corrupt)
	if len(corrupt) == 0 {
		t.Errorf("the kernel reported no dm-verity corruption on the console")
	}
	if tries != 3 {
		t.Errorf("GRUB booted the tampered slot %s %d times before falling back, want 3", bad, tries)
	}
	// Each boot of the tampered slot ended where dm-verity met the first
	// changed block: the kernel restarted, nothing read past it.
	if restarts != tries {
		t.Errorf("%d of %d boots of the tampered slot ended in dm-verity's restart", restarts, tries)
	}
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot="+good) || !strings.Contains(cl, "pith.usrhash="+usr.RootHash) {
		t.Fatalf("after the tampered slot %s the node runs %s, want slot %s", bad, cl, good)
	}
	if ss := n.slots(); ss.Saved != good || ss.Next != "" {
		t.Errorf("after the fallback grubenv says saved %q next %q, want saved %s", ss.Saved, ss.Next, good)
	}
	if st := n.Run("sudo dmsetup status usr"); !strings.HasSuffix(st, " verity V") {
		t.Errorf("slot %s's /usr: dmsetup status %q, want verified", good, st)
	}
}
