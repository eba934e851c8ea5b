package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/secureboot"
)

// publishSigned publishes a release whose boot signatures are by grub's
// OpenPGP key (none when grub is nil) and whose kernel, a real EFI binary
// (efi), carries an Authenticode signature by db's (none when db is nil),
// as pith release does from a signed image.
func publishSigned(t *testing.T, cs *channelServer, version string, efi string, grub, db *secureboot.Keys) release {
	t.Helper()
	dir := t.TempDir()
	root := strings.Repeat("5a", 32)
	kernel, err := os.ReadFile(efi)
	if db != nil {
		signed := filepath.Join(dir, "vmlinuz.signed")
		if err = db.SignEFI(context.Background(), efi, signed, time.Unix(1767225600, 0)); err == nil {
			kernel, err = os.ReadFile(signed)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	r := release{usr: data(40, 1<<20), kernel: kernel, initrd: data(42, 300<<10)}
	vcfg, _ := bootloader.VerityCfg(root)
	contents := map[string][]byte{"usr": r.usr, "vmlinuz": r.kernel, "initrd": r.initrd, "verity.cfg": vcfg}
	for name, b := range contents {
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
		if grub != nil {
			if err := grub.SignFile(filepath.Join(dir, name), time.Unix(1767225600, 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	src := func(name, file string) channels.PayloadSource {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		return channels.PayloadSource{Name: name, File: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
	}
	ps := []channels.PayloadSource{src("usr", "usr"), src("kernel", "vmlinuz"), src("initrd", "initrd")}
	if grub != nil {
		ps = append(ps, src(channels.PayloadKernelSig, "vmlinuz.sig"), src(channels.PayloadInitrdSig, "initrd.sig"), src(channels.PayloadVeritySig, "verity.cfg.sig"))
	}
	if _, err := channels.Publish(cs.dir, channels.Release{Channel: "stable", Version: version, Platform: "linux/amd64", USRVerityHash: root, Payloads: ps},
		[]ed25519.PrivateKey{cs.key}, nil); err != nil {
		t.Fatal(err)
	}
	cs.rel[version] = r
	return r
}

// On a machine whose ESP holds the boot chain's key and db's certificate,
// a release applies only with boot signatures by that key, which go beside
// the slot's kernel, initrd and verity cfg, and a kernel sbsigned by db (the
// firmware runs no other under Secure Boot); any other release is refused
// before the slot is touched, and before its USR is downloaded. A machine
// without db.crt on its ESP checks only the OpenPGP signatures.
func TestAgentBootSignatures(t *testing.T) {
	for _, tool := range []string{"sbsign", "faketime", "grub-mkimage"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps installs it): %v", tool, err)
		}
	}
	mine, other := t.TempDir(), t.TempDir()
	for _, d := range []string{mine, other} {
		if err := secureboot.Generate(d, "Test", time.Unix(1767225600, 0)); err != nil {
			t.Fatal(err)
		}
	}
	load := func(d string) *secureboot.Keys {
		k, err := secureboot.Load(d)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	// The kernel: a small EFI binary (a GRUB image) that sbsign signs.
	efi := filepath.Join(t.TempDir(), "kernel.efi")
	if out, err := exec.Command("grub-mkimage", "-O", "x86_64-efi", "-o", efi, "-p", "/grub", "echo").CombinedOutput(); err != nil {
		t.Fatalf("grub-mkimage: %v: %s", err, out)
	}
	isUSR := func(path string) bool { return strings.HasPrefix(path, "/1.1.0/usr") }
	for _, tc := range []struct {
		name     string
		grub, db *secureboot.Keys
		noDBCert bool   // the ESP has boot.pub only
		want     string // error; "" = applies
	}{
		{"signed by this machine's keys", load(mine), load(mine), false, ""},
		{"signed with another key set", load(other), load(other), false, "refused before writing anything: its kernel is not signed by this machine's boot chain key"},
		{"kernel sbsigned with another db key", load(mine), load(other), false, "refused before writing anything: its kernel is not signed by this machine's Secure Boot db key (signed by \"Test db\" (certificate SHA-256 "},
		{"kernel not sbsigned", load(mine), nil, false, "refused before writing anything: its kernel is not signed by this machine's Secure Boot db key (no Authenticode signature)"},
		{"not signed", nil, nil, false, "has no kernel-sig payload"},
		{"kernel sbsigned with another db key, no db.crt on the ESP", load(mine), load(other), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := newChannelServer(t)
			publishSigned(t, cs, "1.1.0", efi, tc.grub, tc.db)
			fs := newFakeSlots(t, "a")
			pub, _ := os.ReadFile(filepath.Join(mine, secureboot.GrubPubFile))
			os.WriteFile(filepath.Join(fs.dir, "boot.pub"), pub, 0o644)
			if !tc.noDBCert {
				crt, _ := os.ReadFile(filepath.Join(mine, secureboot.CertFile("db")))
				os.WriteFile(filepath.Join(fs.dir, "db.crt"), crt, 0o644)
			}
			a := cs.agent(t, t.TempDir(), "m1", "1.0.0", fs, &fakeReboot{}, nil, StrategyReboot)
			err := a.CheckOnce(context.Background())
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("CheckOnce = %v, want %q", err, tc.want)

				}
				if slices.Contains(fs.events(), "write b") || slices.Contains(fs.events(), "invalidate b") {
					t.Errorf("slot b touched: %v", fs.events())
				}
				if _, err := os.Stat(fs.KernelPath("b")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("kernel of slot b written: %v", err)
				}
				if got := cs.requested(); slices.ContainsFunc(got, isUSR) {
					t.Errorf("the refused release's USR was downloaded: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cs.requested(); !slices.ContainsFunc(got, isUSR) {
				t.Fatalf("requests %v: none of the USR (the test's name of its payload is stale)", got)
			}
			for _, f := range []string{fs.KernelPath("b"), fs.InitrdPath("b"), filepath.Join(fs.dir, "verity-b.cfg")} {
				sig, err := os.ReadFile(f + secureboot.SigSuffix)
				if err != nil {
					t.Fatalf("no signature beside %s: %v", f, err)
				}
				data, _ := os.ReadFile(f)
				if filepath.Base(f) == "verity-b.cfg" {
					data, _ = bootloader.VerityCfg(strings.Repeat("5a", 32))
				}
				if err := secureboot.VerifyDetached(pub, data, sig); err != nil {
					t.Errorf("%s%s: %v", f, secureboot.SigSuffix, err)
				}
			}
		})
	}
}
