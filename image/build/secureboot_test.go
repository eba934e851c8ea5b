package build

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/secureboot"
	"github.com/pith-os/pith/node"
)

// A Secure Boot build: GRUB and the kernel carry db's Authenticode
// signature, every file GRUB loads has a detached signature by the
// embedded key, the ESP carries the public halves for the update agent,
// and the certificates land beside the image and in the manifest.
func TestAssembleSecureBoot(t *testing.T) {
	for _, tool := range []string{"sbsign", "sbverify", "faketime"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps installs it): %v", tool, err)
		}
	}
	keyDir := t.TempDir()
	if err := secureboot.Generate(keyDir, "Test", time.Unix(config.DefaultEpoch, 0)); err != nil {
		t.Fatal(err)
	}
	keys, err := secureboot.Load(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	in := fakeInputs(t)
	// sbsign signs PE images only: a small GRUB image stands in for the kernel.
	in.KernelPath = filepath.Join(t.TempDir(), "vmlinuz")
	tool(t, "grub-mkimage", "-O", "x86_64-efi", "-o", in.KernelPath, "-p", "/grub", "echo")
	in.SecureBoot = keys
	arts, m, err := Assemble(context.Background(), in, t.TempDir(), &Reporter{Log: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	if m.SecureBoot == nil || m.SecureBoot.Certs["db"] != secureboot.Fingerprint(keys.Certs["db"]) {
		t.Errorf("manifest secure_boot %+v", m.SecureBoot)
	}
	for _, r := range secureboot.Roles {
		if _, ok := arts[SecureBootCertPrefix+secureboot.CertFile(r)]; !ok {
			t.Errorf("no %s%s beside the image", SecureBootCertPrefix, secureboot.CertFile(r))
		}
	}
	esp, _ := m.Partition(layout.LabelESP)
	espImg := extract(t, arts[RawName], esp)
	dir := t.TempDir()
	get := func(name string) string {
		dst := filepath.Join(dir, filepath.Base(name))
		tool(t, "mcopy", "-o", "-i", espImg, "::/"+name, dst)
		return dst
	}
	db := filepath.Join(keyDir, secureboot.CertFile("db"))
	for _, f := range []string{"EFI/BOOT/BOOTX64.EFI", "pith/vmlinuz-a"} {
		tool(t, "sbverify", "--cert", db, get(f))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "BOOTX64.EFI")); !bytes.Contains(b, []byte("set check_signatures=enforce")) {
		t.Error("BOOTX64.EFI does not enforce signatures")
	}
	pub, _ := os.ReadFile(keys.GrubPub())
	if b, _ := os.ReadFile(get(SecureBootGrubPub)); !bytes.Equal(b, pub) {
		t.Errorf("%s on the ESP is not grub.pub", SecureBootGrubPub)
	}
	// The signed grub.cfg takes kernel arguments from the unsigned ESP
	// only through the allowlist.
	if b, _ := os.ReadFile(get("grub/grub.cfg")); !bytes.Contains(b, []byte(" pith.usrhash=${pith_usrhash}\n")) || !bytes.Contains(b, []byte("regexp '"+node.SecureBootKargs+"'")) {
		t.Errorf("Secure Boot grub.cfg does not match the machine's kernel arguments against the allowlist:\n%s", b)
	}
	for _, f := range []string{"grub/grub.cfg", "pith/verity-a.cfg", "pith/vmlinuz-a", "pith/initrd-a"} {
		data, _ := os.ReadFile(get(f))
		sig, _ := os.ReadFile(get(f + secureboot.SigSuffix))
		if err := secureboot.VerifyDetached(pub, data, sig); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
