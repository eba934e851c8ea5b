package e2e

import (
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/node"
)

// TestUpdate is issue 7's VM test, on one machine and as few boots as the
// story allows (TCG: ~1.5 min a boot):
//
//  1. The image N+1 is built from the same cache (pith build --version),
//     with the development release key make image baked into N and a new
//     key (pith keygen) baked in beside it, signed with the development
//     key (pith release) and served by `pith channel serve` on 127.0.0.1;
//     a node of version N is told by its cloud-config (coreos.update.
//     server/group, reboot-strategy etcd-lock on its own KV, a verify
//     timeout of 90 s) to follow that channel. No key
//     comes through user-data: the node trusts the key in its USR. Its API
//     listens on every address so the test reads the agent's status
//     through the forwarded port.
//  2. The node starts writing slot B; QEMU is killed in the middle of it.
//     The machine, started again on the same disk, boots the old release.
//  3. The agent starts over and writes slot B; that QEMU was launched with
//     the crash point update-pending-saved (node/crashpoint), so it is
//     killed once the pending record is saved and before the trial is
//     armed. The next boot, on slot A, arms the trial again ("retry"),
//     reboots into B, marks it good and reports N+1.
//  4. Slot A gets N+1's USR with blocks changed across it and is made the
//     saved slot: dm-verity restarts each boot of it until GRUB falls back
//     to slot B (the kernel GRUB cannot load is TestDemo's halted rollout).
//  5. Figures: the update's phases as the agent timed them, against dd's
//     write throughput to the same kind of partition in the same VM.
//  6. N+2, signed only with the new key (a key rotated in through N+1's
//     USR), boots, but a unit scheduled on the node never becomes healthy
//     on it: after the verify timeout the node goes back to N+1 by itself,
//     pithctl update status and history say why, the reboot lock is free
//     again, and N+2 is not tried again.
func TestUpdate(t *testing.T) {
	NeedVMs(t, 1, 16*time.Minute) // one guest at a time: a killed QEMU is gone before the next starts
	imgDir := builtImageDir(t)
	baseImg := bootImagePath(t)
	m, err := manifest.Read(filepath.Join(imgDir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	n0 := m.Version
	n1 := updNextPatch(t, n0)
	n2 := updNextPatch(t, n1)
	tmp := t.TempDir()

	// The development key that make image baked into N, and a new key
	// that N+1 brings (rotation through a release).
	devKey := updReleaseKey(t)
	devPub, err := channels.LoadPrivateKey(devKey)
	if err != nil {
		t.Fatal(err)
	}
	devID := channels.KeyID(devPub.Public().(ed25519.PublicKey))
	keys := filepath.Join(tmp, "keys")
	t.Log(updPith(t, "keygen", "--out", keys))
	newKey := filepath.Join(keys, "pith-release.key")
	newPub, err := channels.LoadPublicKeyFile(filepath.Join(keys, "pith-release.pub"))
	if err != nil {
		t.Fatal(err)
	}
	newID := channels.KeyID(newPub)

	// Version N+1 from the same inputs and cache: only the version differs.
	start := time.Now()
	out1 := updBuild(t, m, n1, tmp, strings.TrimSuffix(devKey, ".key")+".pub", filepath.Join(keys, "pith-release.pub"))
	t.Logf("MEASURE build of %s (warm cache): %s", n1, time.Since(start).Round(time.Second))

	repo := filepath.Join(tmp, "repo")
	t.Log(updPith(t, "release", "--channel", "stable", "--image", out1, "--key", devKey, "--repo", repo))
	addr := updServe(t, repo)
	ud := writeUserData(t, "user-data", updUserData)
	fwd := guestFwd(t, updGuestServer, addr)

	// 2. Kill QEMU while the agent writes slot B.
	// No waits for the console's login prompt: under load systemd can give
	// up on ttyS0's getty. The agent's API and SSH say the node is up.
	c := updBoot(t, baseImg, ud, fwd, nil)
	n := c.Nodes[0]
	st := n.updWaitStatus("the write of slot B", func(s node.UpdateStatus) bool {
		if s.LastError != "" {
			t.Fatalf("update agent error before writing: %s", s.LastError)
		}
		return s.Phase == node.PhaseWriting
	})
	t.Logf("agent writing: %+v", st)
	if !slices.Equal(st.TrustedKeys, []string{devID}) {
		t.Fatalf("release %s trusts keys %v, want only the one make image baked in (%s)", n0, st.TrustedKeys, devID)
	}
	// Kill QEMU once the agent reports some, but far from all, of the USR
	// written: polled quickly, since the direct write takes only seconds.
	var wp *channels.Progress
	for {
		s, ok := n.updStatus()
		if ok && s.Phase != node.PhaseWriting {
			t.Fatalf("the write ended before QEMU could be killed in the middle of it: %+v", s)
		}
		if p := s.Progress; ok && p != nil && strings.HasPrefix(p.Payload, "usr -> slot") && p.Done > 0 {
			if p.Done > p.Total*3/4 {
				t.Fatalf("the write was at %d of %d bytes when first seen; cannot kill QEMU in the middle of it", p.Done, p.Total)
			}
			wp = p
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.M.Kill()
	t.Logf("QEMU killed while the agent wrote slot B (%d of %d bytes written)", wp.Done, wp.Total)

	c2 := Boot(t, Options{Image: n.M.Disk, UserData: ud, GuestFwd: []string{fwd}, KeyFrom: c.VM, FwCfg: crashpointFwCfg(t, "update-pending-saved")})
	n = c2.Nodes[0]
	st = n.updWaitStatus("pithd up after the killed write", func(node.UpdateStatus) bool { return true })
	boot := n.ConsoleText()
	if strings.Contains(boot, "Loading Pith slot B") || !strings.Contains(boot, "Loading Pith slot A") {
		t.Fatalf("after the killed write GRUB did not boot slot A alone (console: slot A %v, slot B %v)",
			strings.Contains(boot, "Loading Pith slot A"), strings.Contains(boot, "Loading Pith slot B"))
	}
	if st.Running != n0 {
		t.Fatalf("after the killed write the node runs %q, want the old release %s", st.Running, n0)
	}
	t.Logf("after the killed write: back on slot A, release %s; agent %s", st.Running, st.Phase)

	// 3. The agent starts over, writes B and reboots into it.
	n.MarkConsole()
	st = n.updWaitStatus("the update to "+n1+" applied", func(s node.UpdateStatus) bool {
		return s.Timing != nil || s.Running == n1
	})
	if st.Timing != nil {
		t.Logf("MEASURE update %s -> %s inside the VM (agent's timing, s): download+verify %.1f, write(decompress+write+fsync) %.1f, read-back verify %.1f, kernel+initrd to ESP %.1f, dm-verity check of the slot %.1f; O_DIRECT %v",
			n0, n1, st.Timing["download"], st.Timing["write"], st.Timing["readback"], st.Timing["esp"], st.Timing["verity"], st.Timing["direct"] == 1)
	}
	// The cut between the pending record and the trial: the next boot is
	// on slot A and arms the trial again.
	n.cutAt("update-pending-saved")
	t.Logf("QEMU killed at crash point update-pending-saved: slot B written, pending record saved, trial not armed")
	n = updBoot(t, n.M.Disk, ud, fwd, c.VM).Nodes[0]
	n.WaitConsole("Loading Pith slot B")
	n.WaitSSH()
	st = n.updWaitStatus(n1+" marked good", func(s node.UpdateStatus) bool { return updHasEvent(s, "updated", n1) })
	if !updHasEvent(st, "retry", n1) || updCountEvents(st, "applied", n1) != 1 {
		t.Errorf("after the cut at update-pending-saved: history %+v, want %s applied once and its trial armed again (retry)", st.History, n1)
	}
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=b") {
		t.Fatalf("after the update the node runs %s, want slot b", cl)
	}
	if v := n.updOSVersion(); !strings.HasPrefix(v, n1+" ") {
		t.Errorf("os-release VERSION %q, want %s", v, n1)
	}
	if want := []string{devID, newID}; !slices.Equal(st.TrustedKeys, slices.Sorted(slices.Values(want))) {
		t.Errorf("release %s trusts keys %v, want the two its USR carries %v", n1, st.TrustedKeys, want)
	}
	ust := n.Run("pithctl update status")
	t.Logf("pithctl update status:\n%s\npithctl update history:\n%s\nslot status:\n%s", ust, n.Run("pithctl update history"), n.Run("sudo pithctl slot status"))
	if !strings.Contains(ust, "Running:   "+n1+"\n") {
		t.Errorf("pithctl update status does not report %s running", n1)
	}
	ss := n.slots()
	if b := ss.Slots[1]; ss.Saved != "b" || ss.Next != "" || !b.Successful || !b.Running || b.Version != n1 {
		t.Errorf("slot status after the update: %+v", ss)
	}
	for _, e := range st.History {
		if e.Kind == "applied" && e.Version == n1 {
			t.Logf("MEASURE applied event: %s", e.Detail)
		}
	}

	// 4. dm-verity (issue 16): slot A gets N+1's USR (as a release sharing
	// it would leave it), and, as the saved slot with blocks changed
	// across it, is restarted by dm-verity until GRUB falls back to B.
	mf1, err := manifest.Read(filepath.Join(out1, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	usr1, _ := mf1.Partition(layout.LabelUSRA)
	if usr1.Verity == nil || usr1.ContentSize == 0 {
		t.Fatalf("%s's manifest: USR-A content %d bytes, verity %+v", n1, usr1.ContentSize, usr1.Verity)
	}
	mib := (usr1.ContentSize + 1<<20 - 1) >> 20
	n.Run(fmt.Sprintf("sudo dd if=/dev/disk/by-partlabel/USR-B of=/dev/disk/by-partlabel/USR-A bs=1M count=%d conv=fsync status=none", mib))
	n.checkTamperedSlotFallsBack("b", usr1.Verity)

	// 5. The disk's own write speed in this VM, for the write phase above:
	// the size of the USR payload, onto the now unused USR-A.
	dd := n.Run(fmt.Sprintf("sudo dd if=/dev/zero of=/dev/disk/by-partlabel/USR-A bs=1M count=%d conv=fsync 2>&1", mib))
	t.Logf("MEASURE USR payload %d bytes; dd of %d MiB to USR-A in the same VM: %s", usr1.ContentSize, mib, updDD(dd))

	// 6. N+2, signed only with the new key (rotated in through N+1's USR),
	// never healthy on this node: back on N+1, and not tried again.
	img1, err := channels.OpenImage(out1)
	if err != nil {
		t.Fatal(err)
	}
	defer img1.Close()
	if img1.USRVerityHash != usr1.Verity.RootHash {
		t.Fatalf("%s's release root hash %s, its manifest's %s", n1, img1.USRVerityHash, usr1.Verity.RootHash)
	}
	sk, err := channels.LoadPrivateKey(newKey)
	if err != nil {
		t.Fatal(err)
	}
	n.checkNeverHealthyRollsBack(repo, img1, sk, n2, n1)
}
