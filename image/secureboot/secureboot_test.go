package secureboot

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/image/rootfs"
)

var epoch = time.Unix(1767225600, 0)

// generated holds two key sets made once (RSA key generation is the slow
// part): newKeys hands out copies, alternating, so tests may change them.
var (
	genOnce   sync.Once
	generated [2]string
	genErr    error
	genNext   int
)

func newKeys(t *testing.T) *Keys {
	t.Helper()
	genOnce.Do(func() {
		for i := range generated {
			generated[i], genErr = os.MkdirTemp("", "pith-sb-test")
			if genErr == nil {
				genErr = Generate(generated[i], "Test", epoch)
			}
		}
	})
	if genErr != nil {
		t.Fatal(genErr)
	}
	src := generated[genNext%2]
	genNext++
	dir := t.TempDir()
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		st, _ := os.Stat(filepath.Join(src, e.Name()))
		os.WriteFile(filepath.Join(dir, e.Name()), b, st.Mode().Perm())
	}
	k, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range generated {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

func TestGenerateRefusesOverwrite(t *testing.T) {
	k := newKeys(t)
	before, _ := os.ReadFile(filepath.Join(k.Dir, KeyFile("db")))
	if err := Generate(k.Dir, "Test", epoch); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second Generate: %v, want a refusal", err)
	}
	after, _ := os.ReadFile(filepath.Join(k.Dir, KeyFile("db")))
	if string(before) != string(after) {
		t.Fatal("db.key changed")
	}
	for _, r := range Roles {
		if c := k.Certs[r]; c.Subject.CommonName != "Test "+r {
			t.Errorf("%s certificate CN %q", r, c.Subject.CommonName)
		}
		if st, _ := os.Stat(filepath.Join(k.Dir, KeyFile(r))); st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", KeyFile(r), st.Mode().Perm())
		}
	}
}

func TestLoadRejects(t *testing.T) {
	a, b := newKeys(t), newKeys(t)
	// grub.pub of another key pair: signatures would not match what GRUB embeds.
	pub, _ := os.ReadFile(b.GrubPub())
	os.WriteFile(a.GrubPub(), pub, 0o644)
	if _, err := Load(a.Dir); err == nil || !strings.Contains(err.Error(), "not the public half") {
		t.Fatalf("mismatched grub.pub: %v", err)
	}
	os.Remove(filepath.Join(b.Dir, KeyFile("db")))
	if _, err := Load(b.Dir); err == nil || !strings.Contains(err.Error(), "db's private key") {
		t.Fatalf("missing db.key: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "pith keygen --secure-boot") {
		t.Fatalf("empty dir: %v", err)
	}
}

func TestSignVerify(t *testing.T) {
	k, other := newKeys(t), newKeys(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "verity-b.cfg")
	os.WriteFile(f, []byte("set pith_usrhash=00\n"), 0o644)
	if err := k.SignFile(f, epoch); err != nil {
		t.Fatal(err)
	}
	sig, _ := os.ReadFile(f + SigSuffix)
	f512 := filepath.Join(dir, "sha512")
	os.WriteFile(f512, []byte("set pith_usrhash=00\n"), 0o644)
	if err := k.SignFileHash(f512, epoch, crypto.SHA512); err != nil {
		t.Fatal(err)
	}
	sig512, _ := os.ReadFile(f512 + SigSuffix)
	if err := k.SignFileHash(f512, epoch, crypto.SHA1); err == nil {
		t.Error("a SHA-1 signature was made")
	}
	pub, _ := os.ReadFile(k.GrubPub())
	otherPub, _ := os.ReadFile(other.GrubPub())
	for _, tc := range []struct {
		name    string
		pub     []byte
		data    string
		sig     []byte
		wantErr bool
	}{
		{"good", pub, "set pith_usrhash=00\n", sig, false},
		{"changed file", pub, "set pith_usrhash=01\n", sig, true},
		{"another machine's key", otherPub, "set pith_usrhash=00\n", sig, true},
		{"good, SHA-512", pub, "set pith_usrhash=00\n", sig512, false},
		{"changed file, SHA-512", pub, "set pith_usrhash=01\n", sig512, true},
		{"another machine's key, SHA-512", otherPub, "set pith_usrhash=00\n", sig512, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyDetached(tc.pub, []byte(tc.data), tc.sig)
			if (err != nil) != tc.wantErr {
				t.Fatalf("VerifyDetached: %v, want error %v", err, tc.wantErr)
			}
		})
	}
	// Same key, input and time: same signature (reproducible builds).
	again := filepath.Join(dir, "again")
	os.WriteFile(again, []byte("set pith_usrhash=00\n"), 0o644)
	k.SignFile(again, epoch)
	if b, _ := os.ReadFile(again + SigSuffix); string(b) != string(sig) {
		t.Fatal("signature differs for the same input and time")
	}
}

// The GRUB images boot under UEFI (2.12 from bookworm-backports for the
// default build, rootfs.FetchGrubEmu: grub-emu of that version, from the
// same signed apt lists, cached) checks the signatures with the key
// embedded as pith build embeds it: good files load, changed ones and
// files signed by another key are refused under check_signatures=enforce.
func TestGrubChecksSignatures(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps installs it): %v", tool, err)
		}
	}
	emu, err := rootfs.TestGrubEmu(context.Background(), t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	k, other := newKeys(t), newKeys(t)
	dir := t.TempDir()
	write := func(name, content string, by *Keys, h crypto.Hash) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		if by != nil {
			if err := by.SignFileHash(p, epoch, h); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	files := []string{
		write("good.cfg", "set v=good\n", k, crypto.SHA256),
		write("changed.cfg", "set v=good\n", k, crypto.SHA256),
		write("other.cfg", "set v=other\n", other, crypto.SHA256),
		write("unsigned.cfg", "set v=unsigned\n", nil, 0),
		write("good512.cfg", "set v=good\n", k, crypto.SHA512),
		write("changed512.cfg", "set v=good\n", k, crypto.SHA512),
	}
	os.WriteFile(files[1], []byte("set v=evil\n"), 0o644)
	os.WriteFile(files[5], []byte("set v=evil\n"), 0o644)
	esp := filepath.Join(dir, "esp.img")
	if out, err := exec.Command("mkfs.vfat", "-C", esp, "4096").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.vfat: %v: %s", err, out)
	}
	args := []string{"-i", esp}
	for _, f := range files {
		args = append(args, f)
		if _, err := os.Stat(f + SigSuffix); err == nil {
			args = append(args, f+SigSuffix)
		}
	}
	args = append(args, k.GrubPub(), "::/")
	if out, err := exec.Command("mcopy", args...).CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v: %s", err, out)
	}
	prefix := filepath.Join(dir, "prefix")
	os.MkdirAll(prefix, 0o755)
	cfg := "trust (hd0)/grub.pub\nset check_signatures=enforce\n"
	for _, n := range []string{"good", "changed", "other", "unsigned", "good512", "changed512"} {
		cfg += "set v=refused\nsource (hd0)/" + n + ".cfg\necho \"RESULT " + n + "=${v}\"\n"
	}
	os.WriteFile(filepath.Join(prefix, "grub.cfg"), []byte(cfg+"reboot\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "device.map"), []byte("(hd0) "+esp+"\n"), 0o644)
	out, _ := emu.Command(context.Background(), "-d", prefix, "-m", filepath.Join(dir, "device.map"), "-r", "host").CombinedOutput()
	got := strings.Join(regexp.MustCompile(`RESULT \w+=\w+`).FindAllString(string(out), -1), " ")
	if want := "RESULT good=good RESULT changed=refused RESULT other=refused RESULT unsigned=refused RESULT good512=good RESULT changed512=refused"; got != want {
		t.Fatalf("grub-emu: %s\nwant %s\n%s", got, want, out)
	}
}

// unsignedEFI writes a small PE32+ EFI binary (a GRUB image) into dir.
func unsignedEFI(t *testing.T, dir string) string {
	t.Helper()
	efi := filepath.Join(dir, "grub.efi")
	if out, err := exec.Command("grub-mkimage", "-O", "x86_64-efi", "-o", efi, "-p", "/grub", "echo").CombinedOutput(); err != nil {
		t.Fatalf("grub-mkimage: %v: %s", err, out)
	}
	return efi
}

// SignEFI: an Authenticode signature by db that sbverify accepts with db's
// certificate and not with another's, and the same bytes for the same time.
func TestSignEFI(t *testing.T) {
	for _, tool := range []string{"sbsign", "sbverify", "faketime", "grub-mkimage"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make deps installs it): %v", tool, err)
		}
	}
	k, other := newKeys(t), newKeys(t)
	dir := t.TempDir()
	efi := unsignedEFI(t, dir)
	var signed [2][]byte
	for i := range signed {
		out := filepath.Join(dir, fmt.Sprintf("signed%d.efi", i))
		if err := k.SignEFI(context.Background(), efi, out, epoch); err != nil {
			t.Fatal(err)
		}
		signed[i], _ = os.ReadFile(out)
		time.Sleep(1100 * time.Millisecond) // a different wall-clock second
	}
	if !bytes.Equal(signed[0], signed[1]) {
		t.Error("two signatures at the same build time differ")
	}
	out := filepath.Join(dir, "signed0.efi")
	if b, err := exec.Command("sbverify", "--cert", filepath.Join(k.Dir, CertFile("db")), out).CombinedOutput(); err != nil {
		t.Errorf("sbverify with db: %v: %s", err, b)
	}
	if b, err := exec.Command("sbverify", "--cert", filepath.Join(other.Dir, CertFile("db")), out).CombinedOutput(); err == nil {
		t.Errorf("sbverify with another db accepted it: %s", b)
	}
}
