//go:build soak

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

// TestSoakNode is `make soak-node` (outside the suite: build tag soak): a
// power cut at every crash point of the node's own state (node/crashpoint)
// that the suite does not already cut at (TestFirstBoot: firstboot-marker
// with a #! script; TestUpdate: update-pending-saved), one machine at a
// time, each booted again on the same disk and checked:
//   - firstboot-marker and apply-file-written with a cloud-config: nothing
//     half applied, first boot recorded on the boot after;
//   - unit-file-written: a scheduled unit's file written, not loaded; the
//     unit runs after the boot that follows;
//   - grubenv-torn: a grubenv copy torn mid-write; GRUB boots slot A;
//   - each step of an update to N+1 that writes state: the node ends on
//     N+1, marked good, no rollback, the reboot lock free.
func TestSoakNode(t *testing.T) {
	NeedVMs(t, 1, 45*time.Minute)
	bootImagePath(t)
	for _, point := range []string{"firstboot-marker", "apply-file-written"} {
		t.Run(point, func(t *testing.T) { soakFirstBoot(t, point) })
	}
	t.Run("unit-file-written", soakUnitFile)
	t.Run("grubenv-torn", soakGrubenvTorn)
	ud, fwd, n1 := soakRelease(t)
	for _, point := range []string{"update-written", "update-trial-armed", "update-before-reboot", "update-healthy", "update-marked-good"} {
		t.Run(point, func(t *testing.T) { soakUpdateCut(t, point, ud, fwd, n1) })
	}
}

const soakFiles = `#cloud-config
write_files:
  - path: /etc/pith-e2e/one
    content: first file
  - path: /etc/pith-e2e/two
    permissions: "0600"
    content: second file
users:
  - name: soak
    groups: [docker]
`

func soakFirstBoot(t *testing.T, point string) {
	ud := writeUserData(t, "soak-files.user-data", soakFiles)
	c := Boot(t, Options{UserData: ud, FwCfg: crashpointFwCfg(t, point)})
	took := c.Nodes[0].cutAt(point)
	t.Logf("cut at %s %s after QEMU started", point, took.Round(time.Second))
	n := Boot(t, Options{UserData: ud, Image: c.Nodes[0].M.Disk, KeyFrom: c.VM}).Nodes[0]
	n.t = t
	n.WaitSSH()
	if got := n.Run("sudo cat /etc/pith-e2e/one; echo; sudo cat /etc/pith-e2e/two; echo; sudo stat -c %a /etc/pith-e2e/two"); got != "first file\nsecond file\n600" {
		t.Errorf("files after the cut: %q", got)
	}
	if got := n.Run("id -nG soak"); !strings.Contains(" "+got+" ", " docker ") {
		t.Errorf("user soak's groups after the cut: %q", got)
	}
	if r := n.Exec("test -f " + node.StateDir + "/" + node.FirstBootFile); r.ExitStatus != 0 {
		t.Errorf("first boot not recorded on the boot after the cut")
	}
	if st := n.Run("pithctl userdata"); !strings.Contains(st, "status:     applied") {
		t.Errorf("pithctl userdata after the cut:\n%s", st)
	}
}

const soakUnit = `[Unit]
Description=Scheduled before a power cut (TestSoakNode)

[Service]
ExecStart=/bin/sleep infinity
`

// soakUnitFile: the cut comes once the scheduler's agent wrote the unit's
// file (under /run: gone with the power); the KV still schedules it here.
func soakUnitFile(t *testing.T) {
	// A one-member KV and scheduler, as TestUpdate's node runs.
	ud := writeUserData(t, "soak-unit.user-data", "#cloud-config\ncoreos:\n  etcd2:\n    listen-client-urls: http://0.0.0.0:2379\n")
	c := Boot(t, Options{UserData: ud, FwCfg: crashpointFwCfg(t, "unit-file-written")})
	n := c.Nodes[0]
	n.WaitSSH()
	n.Run("cat > /tmp/soak.service <<'EOF'\n" + soakUnit + "EOF\nsudo pithctl start --no-block /tmp/soak.service")
	took := n.cutAt("unit-file-written")
	t.Logf("cut at unit-file-written %s after QEMU started", took.Round(time.Second))
	n = Boot(t, Options{UserData: ud, Image: n.M.Disk, KeyFrom: c.VM}).Nodes[0]
	n.t = t
	n.WaitSSH()
	n.Poll("soak.service active after the cut", 3*time.Second, func() (bool, string) {
		out, _ := n.try("systemctl is-active soak.service")
		return out == "active", out
	})
}

// soakGrubenvTorn: the image ships one grubenv copy and the first boot
// makes the second (a new file, renamed into place); the second boot's
// first grubenv write (pith-slot-settle clearing the boot count) rewrites
// the older copy in place, and is torn there.
func soakGrubenvTorn(t *testing.T) {
	c := Boot(t, Options{})
	n := c.Nodes[0]
	n.WaitSSH()
	c.VM.Stop(time.Minute)
	c = Boot(t, Options{Image: n.M.Disk, KeyFrom: c.VM, FwCfg: crashpointFwCfg(t, "grubenv-torn")})
	n = c.Nodes[0]
	took := n.cutAt("grubenv-torn")
	t.Logf("cut at grubenv-torn %s after QEMU started", took.Round(time.Second))
	n = Boot(t, Options{Image: n.M.Disk, KeyFrom: c.VM}).Nodes[0]
	n.t = t
	n.WaitConsole("Loading Pith slot A")
	n.WaitSSH()
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=a") {
		t.Fatalf("after the torn grubenv the node runs %s, want slot a", cl)
	}
	if ss := n.slots(); ss.Saved != "a" || ss.Next != "" || !ss.Slots[0].Running {
		t.Errorf("slot status after the torn grubenv: %+v", ss)
	}
	r := n.Exec("sudo sh -c 'for f in /boot/grub/grubenv /boot/grub/grubenv.1; do echo == $f; grep -a pith_ $f; done'")
	t.Logf("grubenv copies after the torn write and a boot (if /boot is mounted):\n%s%s", r.Stdout, r.Stderr)
}

// soakRelease builds N+1 from the image's inputs, releases it with the
// development key and serves it; the user-data follows that channel with
// etcd-lock on the node's own KV.
func soakRelease(t *testing.T) (ud, fwd, n1 string) {
	m, err := manifest.Read(filepath.Join(builtImageDir(t), manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	n1 = updNextPatch(t, m.Version)
	tmp := t.TempDir()
	devKey := updReleaseKey(t)
	out1 := updBuild(t, m, n1, tmp, strings.TrimSuffix(devKey, ".key")+".pub")
	repo := filepath.Join(tmp, "repo")
	t.Log(updPith(t, "release", "--channel", "stable", "--image", out1, "--key", devKey, "--repo", repo))
	addr := updServe(t, repo)
	ud = writeUserData(t, "soak-update.user-data", updUserData)
	return ud, guestFwd(t, updGuestServer, addr), n1
}

// soakUpdateCut cuts the power at an update's step and checks that the
// boots after it end on N+1, marked good.
func soakUpdateCut(t *testing.T, point, ud, fwd, n1 string) {
	c := Boot(t, Options{UserData: ud, GuestFwd: []string{fwd}, FwCfg: crashpointFwCfg(t, point)})
	took := c.Nodes[0].cutAt(point)
	t.Logf("cut at %s %s after QEMU started", point, took.Round(time.Second))
	n := Boot(t, Options{UserData: ud, GuestFwd: []string{fwd}, Image: c.Nodes[0].M.Disk, KeyFrom: c.VM}).Nodes[0]
	n.t = t
	st := n.updWaitStatus(n1+" marked good", func(s node.UpdateStatus) bool { return updHasEvent(s, "updated", n1) })
	n.WaitSSH()
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=b") {
		t.Errorf("after the cut at %s the node runs %s, want slot b", point, cl)
	}
	if st.Running != n1 || st.Pending != nil || updHasEvent(st, "rollback", n1) {
		t.Errorf("after the cut at %s: running %s, pending %+v, history %+v", point, st.Running, st.Pending, st.History)
	}
	if ss := n.slots(); ss.Saved != "b" || ss.Next != "" || !ss.Slots[1].Successful {
		t.Errorf("slot status after the cut at %s: %+v", point, ss)
	}
	kv, err := rebootlock.NewEtcdKV([]string{fmt.Sprintf("http://127.0.0.1:%d", n.M.Ports[2379])})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if sem, err := (&rebootlock.Semaphore{KV: kv}).Status(ctx); err != nil || len(sem.Holders) != 0 {
		t.Errorf("reboot lock after the cut at %s: %+v %v", point, sem, err)
	}
	t.Logf("cut at %s: history %+v", point, st.History)
}
