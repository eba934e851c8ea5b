package live

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/mkuimage/cpio"
)

const hash = "5acbd442bdedc14eebed70fde2d464715f21cffc9f7c378d6acaf4087574a1b3"

func TestKernelArgs(t *testing.T) {
	tests := []struct{ disk, want string }{
		{
			disk: "console=tty0 console=ttyS0,115200n8 panic=10 pith.slot=a pith.usr=PARTUUID=3d85 pith.root=PARTUUID=08a9 pith.oem=PARTUUID=ec3f pith.platform=qemu pith.usrhash=" + hash,
			want: "console=tty0 console=ttyS0,115200n8 panic=10 pith.live pith.usrhash=" + hash,
		},
		{disk: "", want: "pith.live pith.usrhash=" + hash},
	}
	for _, tc := range tests {
		if got := KernelArgs(&Parts{Cmdline: tc.disk, RootHash: hash}); got != tc.want {
			t.Errorf("KernelArgs(%q) = %q, want %q", tc.disk, got, tc.want)
		}
	}
}

// fakeParts are small stand-ins for a kernel, an initramfs and a USR.
func fakeParts(t *testing.T) *Parts {
	t.Helper()
	dir := t.TempDir()
	p := &Parts{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), USR: filepath.Join(dir, "usr.img"), RootHash: hash, Version: "1.2.3"}
	os.WriteFile(p.Kernel, []byte("kernel"), 0o644)
	var ir bytes.Buffer
	w := cpio.Newc.Writer(&ir)
	w.WriteRecord(cpio.StaticFile("init", "#!/bin/sh\n", 0o755))
	cpio.WriteTrailer(w)
	ir.WriteString("x") // an odd length, as a compressed initramfs has
	os.WriteFile(p.Initrd, ir.Bytes(), 0o644)
	os.WriteFile(p.USR, bytes.Repeat([]byte("usr!"), 300000), 0o644)
	return p
}

// TestPXE reads the one initrd back as the kernel would: the image's
// archive, then the USR archive with the USR image at LiveUSR's path.
func TestPXE(t *testing.T) {
	p := fakeParts(t)
	dir := t.TempDir()
	if err := PXE(p, dir, 1767225600, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, PXEInitrdName))
	usr, _ := os.ReadFile(p.USR)
	first, _ := os.ReadFile(p.Initrd)
	if !bytes.HasPrefix(raw, first) {
		t.Fatalf("pith-pxe.initrd does not start with the image's initramfs")
	}
	second := (len(first) + 3) / 4 * 4 // the kernel's alignment
	if !bytes.Equal(raw[len(first):second], make([]byte, second-len(first))) {
		t.Fatalf("padding after the image's initramfs is not zeros")
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw[second:])))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, r := range recs {
		if "/"+r.Name == "/"+USRInitrdPath {
			got := make([]byte, r.FileSize)
			r.ReadAt(got, 0)
			found = bytes.Equal(got, usr)
		}
	}
	if !found {
		t.Errorf("no %s with the USR's bytes in the second archive (%d records)", USRInitrdPath, len(recs))
	}
	script, _ := os.ReadFile(filepath.Join(dir, PXEScriptName))
	for _, want := range []string{"#!ipxe", "\nisset ${ip} || dhcp\n", "kernel " + PXEKernelName + " pith.live pith.usrhash=" + hash + " initrd=" + PXEInitrdName, "initrd " + PXEInitrdName} {
		if !strings.Contains(string(script), want) {
			t.Errorf("iPXE script lacks %q:\n%s", want, script)
		}
	}
}
