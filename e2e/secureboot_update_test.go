package e2e

// TestSecureBoot's update (issues 16 and 17): its machine encrypts ROOT
// on first boot (Ignition, bound to the TPM's PCR 7) and follows a channel
// served from the host. A release built with another set of Secure Boot
// keys is refused before anything is written; the next release, built
// with the image's keys, is applied and boots slot B under Secure Boot,
// where pith-init opens ROOT through the TPM again.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
)

// sbUpdate is TestSecureBoot's release repository and its two releases.
type sbUpdate struct {
	repo, devKey string
	bad, good    string // versions: bad signed with other keys, good with the image's
	goodOut      string // good's pith build output
	goodRoot     string // good's USR dm-verity root hash
	fwd          string // the guestfwd rule to the channel server
}

// sbReleases makes two releases of the signed image whose manifest is mf:
// bad (the next patch version) signed with a second set of Secure Boot
// keys (pith keygen --secure-boot), good (the one after) with the image's
// keys. Both trust the development release key and are signed with it, so
// only their boot artifacts tell them apart. bad is the suite's image
// built again with the other keys (its USR is cached) and released as the
// next version: it is refused before its USR is fetched, so what that
// says does not matter. good is built from mf's inputs with its own
// version, which takes a new USR. bad is published on channel stable and
// served now; good is published by checkUpdateApplied.
func sbReleases(t *testing.T, mf *manifest.Manifest, keys string) *sbUpdate {
	t.Helper()
	tmp := t.TempDir()
	other := filepath.Join(tmp, "other-keys")
	updPith(t, "keygen", "--secure-boot", "--out", other)
	u := &sbUpdate{repo: filepath.Join(tmp, "repo"), devKey: updReleaseKey(t)}
	pub := strings.TrimSuffix(u.devKey, ".key") + ".pub"
	u.bad = updNextPatch(t, mf.Version)
	u.good = updNextPatch(t, u.bad)
	start := time.Now()
	badOut := filepath.Join(tmp, "bad")
	signedImage(t, other, badOut)
	u.goodOut = updBuildWith(t, mf, u.good, tmp, []string{"--secure-boot-keys", keys}, pub)
	t.Logf("BENCH the releases' signed builds (warm cache): %s", time.Since(start).Round(100*time.Millisecond))
	gm, err := manifest.Read(filepath.Join(u.goodOut, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	usr, _ := gm.Partition(layout.LabelUSRA)
	if usr.Verity == nil || gm.SecureBoot == nil {
		t.Fatalf("%s's manifest: verity %+v, secure boot %+v", u.good, usr.Verity, gm.SecureBoot)
	}
	u.goodRoot = usr.Verity.RootHash
	start = time.Now()
	updPith(t, "release", "--channel", "stable", "--image", badOut, "--version", u.bad, "--key", u.devKey, "--repo", u.repo)
	t.Logf("BENCH pith release of %s: %s", u.bad, time.Since(start).Round(100*time.Millisecond))
	u.fwd = guestFwd(t, updGuestServer, updServe(t, u.repo))
	return u
}

// sbKarg is the Secure Boot machine's kernel argument: on the allowlist
// (node.SecureBootKargs) and no change from the kernel's default.
const sbKarg = "ipv6.disable=0"

// sbIgnition is the machine's Ignition config: ROOT encrypted and bound
// to the TPM as TestFirstBoot's Ignition machine has it, a kernel
// argument (sbKarg), and update.conf pointing pithd at the channel
// (rebooting as soon as an update is written: a single machine, no
// lock). The SSH key comes from the harness's meta-data, as for every
// machine.
func sbIgnition(t *testing.T) string {
	t.Helper()
	conf := fmt.Sprintf("GROUP=stable\nSERVER=http://%s/\nREBOOT_STRATEGY=reboot\n", updGuestServer)
	cfg := map[string]any{
		"ignition": map[string]string{"version": "3.4.0"},
		"storage": map[string]any{
			"luks": []map[string]any{{"name": e2eRootLuks, "label": "luks-root", "device": "/dev/disk/by-partlabel/ROOT",
				"clevis": map[string]any{"tpm2": true}, "wipeVolume": true}},
			"filesystems": []map[string]any{{"device": "/dev/mapper/" + e2eRootLuks, "format": "ext4", "label": "ROOT", "wipeFilesystem": true}},
			"files": []map[string]any{{"path": "/etc/coreos/update.conf", "mode": 0o644, "overwrite": true,
				"contents": map[string]string{"source": "data:;base64," + base64.StdEncoding.EncodeToString([]byte(conf))}}},
		},
		// The signed grub.cfg takes it from the unsigned ESP: it is on the
		// allowlist (checkIgnitionKargs).
		"kernelArguments": map[string]any{"shouldExist": []string{sbKarg}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sbUpdateStatus polls pithctl update status over SSH (pithd's API
// listens on the node only) until it contains want.
func sbUpdateStatus(t *testing.T, n *Node, what, want string) string {
	t.Helper()
	deadline := time.Now().Add(BootTimeout(n.c.Accel))
	for {
		st := n.Run("pithctl update status")
		if strings.Contains(st, want) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("never %s: pithctl update status has no %q:\n%s", what, want, st)
		}
		time.Sleep(2 * time.Second)
	}
}

// checkUpdateRefused: pithd checked the channel when it started, found
// bad, downloaded it and refused it, its kernel's GRUB signature being by
// another key: pithctl update status says so, the history has nothing of
// bad, and slot B is as the image left it: no kernel, initrd or
// signatures of it on the ESP, its USR partition still blank.
func (u *sbUpdate) checkUpdateRefused(t *testing.T, n *Node, mf *manifest.Manifest) {
	t.Helper()
	st := sbUpdateStatus(t, n, "refused "+u.bad, "Error:     update: release "+u.bad+" refused before writing anything: its kernel is not signed by this machine's boot chain key")
	t.Logf("BENCH %s refused, seen %s after QEMU started; pithctl update status:\n%s", u.bad, n.Since().Round(time.Second), st)
	if !strings.Contains(st, "Available: "+u.bad+"\n") {
		t.Errorf("pithctl update status does not show %s available", u.bad)
	}
	if h := n.Run("pithctl update history"); strings.Contains(h, u.bad) {
		t.Errorf("pithctl update history has %s, which was refused:\n%s", u.bad, h)
	}
	if esp := n.Run("sudo ls /boot/pith"); regexp.MustCompile(`(?m)^(vmlinuz|initrd)-b`).MatchString(esp) {
		t.Errorf("the ESP has slot B's boot files after the refusal:\n%s", esp)
	}
	if usrB, _ := mf.Partition(layout.LabelUSRB); usrB.ContentSize != 0 {
		t.Fatalf("the image's USR-B has %d bytes of content, want a blank slot", usrB.ContentSize)
	}
	if r := n.Exec("sudo cmp -n 1048576 /dev/disk/by-partlabel/USR-B /dev/zero"); r.ExitStatus != 0 {
		t.Errorf("USR-B's first MiB is no longer blank after the refusal: %s%s", r.Stdout, r.Stderr)
	}
}

// checkUpdateApplied publishes good and has the node check the channel:
// it applies good to slot B and reboots into it; that boot, under Secure
// Boot with the same PCR 7 as first boot (pcr7), opens the encrypted ROOT
// through the TPM, and the update is marked good.
func (u *sbUpdate) checkUpdateApplied(t *testing.T, n *Node, pcr7 string) {
	t.Helper()
	n.MarkConsole() // before the agent can see good
	updPith(t, "release", "--channel", "stable", "--image", u.goodOut, "--key", u.devKey, "--repo", u.repo)
	start := time.Now()
	n.Run("sudo pithctl update check")
	n.WaitConsole("Loading Pith slot B")
	t.Logf("BENCH Secure Boot update %s: applied and rebooting into slot B after %s", u.good, time.Since(start).Round(time.Second))
	n.WaitSSH()
	hist := ""
	marked := regexp.MustCompile(`(?m)^\S+\s+` + regexp.QuoteMeta(u.good) + `\s+updated\b`)
	for deadline := time.Now().Add(BootTimeout(n.c.Accel)); !marked.MatchString(hist); time.Sleep(2 * time.Second) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never marked good; pithctl update history:\n%s", u.good, hist)
		}
		hist = n.Run("pithctl update history")
	}
	t.Logf("BENCH Secure Boot update %s: marked good %s after the check; history:\n%s", u.good, time.Since(start).Round(time.Second), hist)
	// The machine's own arguments reach slot B's line as slot A's.
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=b") || !slices.Contains(strings.Fields(cl), sbKarg) {
		t.Errorf("after the update the node runs %s, want slot b with %s", cl, sbKarg)
	}
	if v := n.updOSVersion(); !strings.HasPrefix(v, u.good+" ") {
		t.Errorf("os-release VERSION %q, want %s", v, u.good)
	}
	checkSecureBootOn(n, "after the update")
	status := n.Run("sudo pithctl status")
	for _, want := range []string{"Secure Boot:  enabled", fmt.Sprintf("Verity /usr:  ok (slot b, root hash %s)", u.goodRoot)} {
		if !strings.Contains(status, "\n"+want) {
			t.Errorf("after the update pithctl status has no line starting %q:\n%s", want, status)
		}
	}
	// What the ROOT volume's key is sealed to: the new kernel, initrd and
	// verity cfg are measured elsewhere (PCRs 4, 8, 9).
	if got := n.Run("sudo cat /sys/class/tpm/tpm0/pcr-sha256/7"); got != pcr7 {
		t.Errorf("PCR 7 on slot B is %s, on first boot it was %s", got, pcr7)
	}
	checkRootLuks(t, n, "after the update to slot B")
	if ss := n.slots(); ss.Saved != "b" || ss.Next != "" || !ss.Slots[1].Successful || !ss.Slots[1].Running || ss.Slots[1].Version != u.good {
		t.Errorf("slot status after the update: %+v", ss)
	}
}
