package main

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/build"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/secureboot"
)

// A release of a signed image carries the boot chain's signatures, read
// from the image's ESP, and they verify against the key GRUB embeds; an
// unsigned image's release carries none.
func TestBootSigPayloads(t *testing.T) {
	for _, tool := range []string{"sbsign", "faketime", "grub-mkimage", "mksquashfs"} {
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
	for _, signed := range []bool{true, false} {
		dir := t.TempDir()
		usr := filepath.Join(dir, "usr")
		os.MkdirAll(filepath.Join(usr, "lib"), 0o755)
		noise := make([]byte, 64<<10) // incompressible: dm-verity needs two blocks
		rand.Read(noise)
		os.WriteFile(filepath.Join(usr, "lib", "noise"), noise, 0o644)
		kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
		if out, err := exec.Command("grub-mkimage", "-O", "x86_64-efi", "-o", kernel, "-p", "/grub", "echo").CombinedOutput(); err != nil {
			t.Fatalf("grub-mkimage: %v: %s", err, out)
		}
		os.WriteFile(initrd, []byte(strings.Repeat("initrd", 5000)), 0o644)
		c := config.Default()
		c.DiskSize, c.Epoch, c.Formats = layout.MinDiskSize(), config.DefaultEpoch, []string{"raw"}
		in := build.Inputs{Config: c, UsrDir: usr, KernelPath: kernel, KernelVersion: "6.1.0-fake", InitrdPath: initrd}
		if signed {
			in.SecureBoot = keys
		}
		work := filepath.Join(dir, "out")
		os.MkdirAll(work, 0o755)
		m, err := func() (string, error) {
			_, m, err := build.Assemble(context.Background(), in, work, &build.Reporter{Log: func(string, ...any) {}})
			if err != nil {
				return "", err
			}
			return m.Disk.Partitions[2].Verity.RootHash, nil
		}()
		if err != nil {
			t.Fatal(err)
		}
		img, err := channels.OpenImage(work)
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close() // the payloads read through it, as during pith release
		ps, err := img.BootSigSources()
		if err != nil {
			t.Fatal(err)
		}
		if !signed {
			if len(ps) != 0 {
				t.Errorf("unsigned image: %d signature payloads", len(ps))
			}
			continue
		}
		if len(ps) != 3 {
			t.Fatalf("signed image: %d signature payloads, want 3", len(ps))
		}
		pub, _ := os.ReadFile(keys.GrubPub())
		vcfg, _ := bootloader.VerityCfg(m)
		for i, what := range []string{"pith/vmlinuz-a", "pith/initrd-a", ""} {
			var data []byte
			if what == "" {
				data = vcfg
			} else {
				r, _ := img.OpenESPFile(what)
				data, _ = io.ReadAll(r)
				r.Close()
			}
			r, err := ps[i].Open()
			if err != nil {
				t.Fatal(err)
			}
			sig, _ := io.ReadAll(r)
			r.Close()
			if ps[i].Name != channels.BootSigPayloads[i] {
				t.Errorf("payload %d is %s, want %s", i, ps[i].Name, channels.BootSigPayloads[i])
			}
			if err := secureboot.VerifyDetached(pub, data, sig); err != nil {
				t.Errorf("%s: %v", ps[i].Name, err)
			}
		}
	}
}
