package secureboot

import (
	"context"
	"crypto"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// SigSuffix is what GRUB's check_signatures=enforce looks for beside a file.
const SigSuffix = ".sig"

// SignEFI signs the PE/COFF binary in with db (Authenticode, sbsign from
// Debian's sbsigntool) into out. sbsign puts the time into the signature's
// signed attributes and has no option for it: it runs under faketime with
// the clock stopped at created (the build's SOURCE_DATE_EPOCH), so the same
// inputs give the same bytes. Stopped, not started there (faketime's
// default): on a loaded machine sbsign read the time a second after it
// started, and a rebuild differed.
func (k *Keys) SignEFI(ctx context.Context, in, out string, created time.Time) error {
	for _, tool := range []struct{ bin, pkg string }{{"sbsign", "sbsigntool"}, {"faketime", "faketime"}} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			return fmt.Errorf("%s not found: install %s (make deps)", tool.bin, tool.pkg)
		}
	}
	cmd := exec.CommandContext(ctx, "faketime", "-f", created.UTC().Format("2006-01-02 15:04:05"),
		"sbsign", "--key", filepath.Join(k.Dir, KeyFile("db")), "--cert", filepath.Join(k.Dir, CertFile("db")), "--output", out, in)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sbsign %s: %v: %s", filepath.Base(in), err, strings.TrimSpace(string(b)))
	}
	return nil
}

// SignFile writes path+SigSuffix: a detached OpenPGP signature by GRUB's
// key over SHA-256, the form GRUB's pgp module reads. created is the
// signature's time (the build's SOURCE_DATE_EPOCH: same inputs, same
// bytes). SHA-256, because nodes before SHA-512 signatures were accepted
// (VerifyDetached) check a release's boot files so.
func (k *Keys) SignFile(path string, created time.Time) error {
	return k.SignFileHash(path, created, crypto.SHA256)
}

// SignFileHash is SignFile with the hash h: SHA-256 or SHA-512, which GRUB
// hashes about 1.5 times faster, for what only this build's GRUB checks.
func (k *Keys) SignFileHash(path string, created time.Time, h crypto.Hash) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sig, err := signDetached(k.grub, k.pub, data, created, h)
	if err != nil {
		return fmt.Errorf("sign %s: %v", path, err)
	}
	return os.WriteFile(path+SigSuffix, sig, 0o644)
}

// GrubPub is the path of GRUB's public key, embedded in BOOTX64.EFI.
func (k *Keys) GrubPub() string { return filepath.Join(k.Dir, GrubPubFile) }

// VerifyDetached checks sig over data against GRUB's public key pub (the
// content of GrubPubFile): what GRUB will check at boot, done before
// anything is written (the update agent with the key on the ESP, tests).
func VerifyDetached(pub, data, sig []byte) error {
	key, err := parsePublicKey(pub)
	if err != nil {
		return fmt.Errorf("boot chain public key: %v", err)
	}
	if err := verifyDetached(key, data, sig); err != nil {
		return fmt.Errorf("not signed by this machine's boot chain key: %v", err)
	}
	return nil
}
