package e2e

// Issue 16, verified and measured boot: an image signed for Secure Boot
// (pith build --secure-boot-keys) boots under OVMF's Secure Boot firmware
// with its keys enrolled and a TPM, the kernel gets the firmware's event
// log and its replay gives the TPM's PCRs, an update (with ROOT encrypted
// and bound to the TPM) is refused when signed by other keys and applied
// when signed by the image's, and GRUB refuses a kernel changed on the
// ESP.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/internal/tpmlog"
	"github.com/pith-os/pith/vm"
)

// efiSecureBootVar is the SecureBoot variable in efivarfs: 4 attribute
// bytes, then 1 when the firmware enforces Secure Boot.
const efiSecureBootVar = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

// checkSecureBootOn fails n's test unless its firmware enforces Secure
// Boot; what says which machine or when.
func checkSecureBootOn(n *Node, what string) {
	n.t.Helper()
	if f := strings.Fields(n.Run("sudo od -An -tx1 " + efiSecureBootVar)); len(f) != 5 || f[4] != "01" {
		n.t.Errorf("%s: SecureBoot efivar = %v, want 4 attribute bytes and 01", what, f)
	}
}

// GRUB's console lines (grub_print_error's "error: %s.", normal
// mode's fallback and failure notices).
const (
	grubBadSignature = "error: bad signature."
	grubFallingBack  = "Falling back to `Pith slot %s'"
	grubBothFailed   = "Failed to boot both default and fallback entries."
	kernelBanner     = "Linux version "
)

// TestSecureBoot builds the suite's image signed with fresh Secure Boot
// keys and two releases of it (sbReleases), boots it with those keys
// enrolled and a TPM, ROOT encrypted by its Ignition config, and checks
// what the node reports. Its update agent refuses the first release
// (other Secure Boot keys) and applies the second, whose slot B boots
// under Secure Boot and opens ROOT through the TPM. Then root on the node
// changes one byte of both slots' kernels on the ESP and reboots: GRUB
// must refuse slot B's, fall back to slot A, refuse that too and give up:
// no kernel starts. One QEMU: a boot and three reboots (the first for
// the config's kernelArguments).
func TestSecureBoot(t *testing.T) {
	NeedVMs(t, 1, 7*time.Minute) // the signed image's and releases' builds, then one guest
	img, mf, keys := secureBootImage(t)
	usrA, _ := mf.Partition(layout.LabelUSRA)
	if usrA.Verity == nil {
		t.Fatal("the signed image's manifest has no dm-verity record for USR-A")
	}
	// The certificates pith build wrote beside the image, as pith boot
	// --secure-boot enrolls them.
	certs, err := vm.LoadSecureBootCerts(filepath.Dir(img), vm.SecureBootCertPrefix)
	if err != nil {
		t.Fatal(err)
	}
	upd := sbReleases(t, mf, keys)
	ud := writeUserData(t, "ignition.json", sbIgnition(t))
	c := Boot(t, Options{Image: img, Firmware: vm.UEFI, SecureBoot: certs, TPM: true, UserData: ud, GuestFwd: []string{upd.fwd}})
	n := c.Nodes[0]
	n.WaitSSH()
	t.Logf("BENCH Secure Boot boot (%s): SSH at %s", c.Accel.Name, n.Since().Round(time.Second))

	checkSecureBootOn(n, "the Secure Boot machine")
	if dmesg := n.Run("sudo dmesg"); !strings.Contains(dmesg, "Secure boot enabled") {
		t.Errorf("the kernel did not log \"Secure boot enabled\"")
	}
	// Debian's kernel locks itself down when booted under Secure Boot.
	if l := n.Run("sudo cat /sys/kernel/security/lockdown"); !regexp.MustCompile(`\[(integrity|confidentiality)\]`).MatchString(l) {
		t.Errorf("kernel lockdown %q, want integrity or confidentiality selected", l)
	}
	// Its exit status says only whether the user-data was applied.
	r := n.Exec("sudo pithctl status")
	status := string(r.Stdout)
	if r.ExitStatus != 0 {
		t.Errorf("pithctl status exited %d: %s", r.ExitStatus, r.Stderr)
	}
	for _, want := range []string{
		"Secure Boot:  enabled",
		fmt.Sprintf("Verity /usr:  ok (slot a, root hash %s)", usrA.Verity.RootHash),
		"TPM:          TPM 2.0",
	} {
		if !strings.Contains(status, "\n"+want) {
			t.Errorf("pithctl status has no line starting %q:\n%s", want, status)
		}
	}
	checkMeasuredBoot(t, n, status)
	checkIgnitionKargs(t, n, sbKarg)
	checkRootLuks(t, n, "first boot")
	pcr7 := n.Run("sudo cat /sys/class/tpm/tpm0/pcr-sha256/7")
	upd.checkUpdateRefused(t, n, mf)
	upd.checkUpdateApplied(t, n, pcr7)
	// The refusal is GRUB's own check (check_signatures=enforce): it is
	// tested whatever the checks above found.
	checkSignedKernelRefused(t, n)
}

// checkMeasuredBoot: the firmware extends PCRs 0-7 (7: the Secure Boot
// policy), GRUB's tpm module 8 (commands, kernel line) and 9 (the files
// it loads), the kernel's EFI stub 9 too (its command line and initrd).
// GRUB 2.12 starts the kernel through that stub, which hands the kernel
// the firmware's event log (the efi: line's TPMEventLog=): the log
// replayed by pithctl boot (internal/tpmlog) must give the TPM's PCRs,
// 0 to 9 at least. GRUB 2.06 skipped the stub: no log at all.
func checkMeasuredBoot(t *testing.T, n *Node, status string) {
	t.Helper()
	for _, pcr := range []int{0, 7, 8, 9} {
		v := n.Run("sudo cat /sys/class/tpm/tpm0/pcr-sha256/" + strconv.Itoa(pcr))
		if strings.Trim(v, "0") == "" {
			t.Errorf("PCR %d is %q: nothing was measured into it", pcr, v)
		}
	}
	if efi := regexp.MustCompile(`efi: .*`).FindAllString(n.Run("sudo dmesg"), -1); !strings.Contains(strings.Join(efi, "\n"), "TPMEventLog=") {
		t.Errorf("the kernel's efi: lines name no TPMEventLog (the EFI stub did not run?): %q", efi)
	}
	raw, err := base64.StdEncoding.DecodeString(n.Run("sudo base64 -w0 /sys/kernel/security/tpm0/binary_bios_measurements"))
	if err != nil {
		t.Fatal(err)
	}
	checkFirmwareStartedKernel(t, raw)
	r := n.Exec("sudo pithctl boot --json")
	var rep struct {
		TPM       string `json:"tpm"`
		PCRsMatch bool   `json:"pcrs_match_event_log"`
	}
	if err := json.Unmarshal(r.Stdout, &rep); err != nil {
		t.Fatalf("pithctl boot --json (exit %d): %v: %s%s", r.ExitStatus, err, r.Stdout, r.Stderr)
	}
	m := regexp.MustCompile(`(\d+) events; the event log replays to PCRs ([\d,]+) \(sha256\)`).FindStringSubmatch(rep.TPM)
	if !rep.PCRsMatch || m == nil {
		t.Fatalf("pithctl boot: the event log does not replay to the TPM's PCRs: %q", rep.TPM)
	}
	replayed := map[string]bool{}
	for _, p := range strings.Split(m[2], ",") {
		replayed[p] = true
	}
	for p := range 10 {
		if !replayed[strconv.Itoa(p)] {
			t.Errorf("the event log has no events for PCR %d (replayed: %s)", p, m[2])
		}
	}
	if !strings.Contains(status, rep.TPM) {
		t.Errorf("pithctl status does not show pithctl boot's TPM line %q:\n%s", rep.TPM, status)
	}
	t.Logf("TPM: %s", rep.TPM)
}

// TCG PC Client event types of what the firmware's LoadImage logs.
const (
	evBootServicesApp = 0x80000003 // PCR 4: an image's Authenticode digest
	evVarAuthority    = 0x800000e0 // PCR 7: the db entry that verified it
)

// checkFirmwareStartedKernel: the firmware measured two applications into
// PCR 4 (GRUB, then the kernel GRUB handed it), and PCR 7's authority
// events are each distinct: EDK II logs the db certificate that verified
// an image once per boot, so a kernel signed by GRUB's db key leaves
// PCR 7 (what a TPM-bound LUKS volume is sealed to) as it was.
func checkFirmwareStartedKernel(t *testing.T, raw []byte) {
	t.Helper()
	l, err := tpmlog.Parse(raw)
	if err != nil {
		t.Fatalf("event log: %v", err)
	}
	apps, seen := 0, map[string]bool{}
	for _, e := range l.Events {
		switch {
		case e.PCR == 4 && e.Type == evBootServicesApp:
			apps++
		case e.PCR == 7 && e.Type == evVarAuthority:
			if seen[string(e.Data)] {
				t.Errorf("PCR 7: the same authority was logged twice (%d bytes)", len(e.Data))
			}
			seen[string(e.Data)] = true
		}
	}
	if apps < 2 {
		t.Errorf("PCR 4 has %d EFI applications, want GRUB and the kernel (LoadImage)", apps)
	}
	if len(seen) != 1 {
		t.Errorf("PCR 7 has %d authority events, want 1 (db's certificate, for GRUB and the kernel)", len(seen))
	}
	t.Logf("event log: %d events, %d EFI applications in PCR 4, %d authorities in PCR 7", len(l.Events), apps, len(seen))
}

// secureBootImage builds the suite's image signed with keys made for this
// test (signedImage) and returns pith.img, its manifest and the keys'
// directory.
func secureBootImage(t *testing.T) (string, *manifest.Manifest, string) {
	t.Helper()
	builtImageDir(t) // skips (or fails in CI) without the suite's image
	tmp := t.TempDir()
	keys, out := filepath.Join(tmp, "keys"), filepath.Join(tmp, "sb")
	updPith(t, "keygen", "--secure-boot", "--out", keys)
	start := time.Now()
	mf := signedImage(t, keys, out)
	t.Logf("BENCH pith build --secure-boot-keys (warm cache): %s", time.Since(start).Round(100*time.Millisecond))
	return filepath.Join(out, "pith.img"), mf, keys
}

// signedImage builds the suite's image (the built-in config, as make
// image) into out, signed with the Secure Boot keys in keys, raw only, and
// returns its manifest. The cached Debian tree and USR make it a matter of
// seconds.
func signedImage(t *testing.T, keys, out string) *manifest.Manifest {
	t.Helper()
	pub := strings.TrimSuffix(updReleaseKey(t), ".key") + ".pub"
	args := []string{"build", "--out", out, "--agent-bin-dir", updBinDir(t), "--release-key", pub,
		"--secure-boot-keys", keys, "--formats", "raw"}
	if c := os.Getenv("PITH_E2E_CACHE_DIR"); c != "" {
		args = append(args, "--cache", c)
	}
	if log := updPith(t, args...); !strings.Contains(log, "signed for Secure Boot") {
		t.Fatalf("pith build did not sign the boot chain:\n%s", log)
	}
	mf, err := manifest.Read(filepath.Join(out, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if mf.SecureBoot == nil {
		t.Fatal("the signed image's manifest has no secure_boot record")
	}
	return mf
}

// checkSignedKernelRefused changes one byte in the middle of each slot's
// kernel on the ESP (their .sig stay), reboots, and expects GRUB to refuse
// slot B's (the saved entry since the update) with its pgp verifier's
// error, fall back to slot A, refuse that one too and give up: no kernel
// starts.
func checkSignedKernelRefused(t *testing.T, n *Node) {
	t.Helper()
	for _, slot := range []string{"b", "a"} {
		flipKernelByte(t, n, "/boot/pith/vmlinuz-"+slot)
	}

	n.MarkConsole()
	from := vm.Console{Path: n.M.SerialLog}.Size()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key, "sudo systemctl reboot")
	cancel()
	start := time.Now()
	// A kernel banner or a login prompt would mean a changed kernel ran.
	if m, _ := n.WaitConsole(grubBadSignature, kernelBanner, LoginMarker); m != grubBadSignature {
		t.Fatalf("after the reboot the console shows %q before GRUB refused the changed kernel", m)
	}
	refused := time.Since(start)
	if m, _ := n.WaitConsole(grubBothFailed, kernelBanner, LoginMarker); m != grubBothFailed {
		t.Fatalf("after refusing slot B's kernel the console shows %q, want GRUB's %q", m, grubBothFailed)
	}
	t.Logf("BENCH Secure Boot refusal: GRUB refused the changed kernel %s after the reboot, gave up after %s",
		refused.Round(time.Second), time.Since(start).Round(time.Second))
	b2, _ := vm.Console{Path: n.M.SerialLog}.ReadFrom(from)
	console := string(b2)
	// In this order: slot B's entry, the refusal, the fallback to slot A,
	// its entry and refusal, GRUB giving up.
	last := -1
	for _, want := range []string{"Loading Pith slot B...", grubBadSignature, fmt.Sprintf(grubFallingBack, "A"),
		"Loading Pith slot A...", grubBadSignature, grubBothFailed} {
		i := strings.Index(console[last+1:], want)
		if i < 0 {
			t.Fatalf("the console after the reboot lacks %q after position %d:\n%s", want, last+1, console)
		}
		last += 1 + i
	}
	if strings.Contains(console, kernelBanner) {
		t.Errorf("a kernel started after the reboot:\n%s", console)
	}
}

// flipKernelByte inverts the byte in the middle of kernel, a file on the
// ESP (/boot is root only).
func flipKernelByte(t *testing.T, n *Node, kernel string) {
	t.Helper()
	n.Run("sudo test -f " + kernel + ".sig")
	before := n.Run("sudo sha256sum " + kernel)
	size, err := strconv.ParseInt(n.Run("sudo stat -c %s "+kernel), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	off := size / 2
	b, err := strconv.Atoi(n.Run(fmt.Sprintf("sudo od -An -tu1 -j %d -N 1 %s", off, kernel)))
	if err != nil {
		t.Fatal(err)
	}
	n.Run(fmt.Sprintf(`printf '\%03o' | sudo dd of=%s bs=1 seek=%d count=1 conv=notrunc status=none && sync`, b^0xff, kernel, off))
	if after := n.Run("sudo sha256sum " + kernel); after == before {
		t.Fatalf("%s did not change", kernel)
	}
	t.Logf("%s: byte %d of %d changed from %#02x to %#02x", kernel, off, size, b, b^0xff)
}
