package install

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/pith-os/pith/channels"
	pithinit "github.com/pith-os/pith/initramfs/init"
)

const userData = "#cloud-config\nhostname: installed\n"

const ignitionUserData = `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/pith-installed","contents":{"source":"data:,yes"}}]}}`

func TestInstall(t *testing.T) {
	tests := []struct {
		name string
		// prepare changes the fixture and returns the options.
		prepare func(t *testing.T, f *fixture, o *Options)
		disk    int64 // target size (default: twice the image)
		// oemFile and oemData are the OEM file the user-data must land in
		// (default: cloud-config.yml holding userData).
		oemFile, oemData string
		wantErr          string
		wantIs           error
	}{
		{name: "raw file, unsigned, disk larger than the image"},
		{name: "disk the image's size", disk: 64 * mib},
		{name: "signed manifest, trusted key", prepare: func(t *testing.T, f *fixture, o *Options) {
			o.Keys = channels.NewKeyring(f.sign(t).Public().(ed25519.PublicKey))
			o.RequireSignature = true
		}},
		{name: "zstd image over HTTP", prepare: func(t *testing.T, f *fixture, o *Options) {
			f.zst(t)
			srv := httptest.NewServer(http.FileServer(http.Dir(f.dir)))
			t.Cleanup(srv.Close)
			o.Image = srv.URL + "/pith.img.zst"
			o.TempDir = t.TempDir()
		}},
		{name: "corrupt image", wantIs: ErrImage, prepare: func(t *testing.T, f *fixture, o *Options) {
			fh, _ := os.OpenFile(f.img, os.O_WRONLY, 0)
			fh.WriteAt([]byte("X"), 1*mib+5)
			fh.Close()
		}},
		{name: "corrupt zstd image over HTTP", wantIs: ErrImage, prepare: func(t *testing.T, f *fixture, o *Options) {
			fh, _ := os.OpenFile(f.img, os.O_WRONLY, 0)
			fh.WriteAt([]byte("X"), 1*mib+5)
			fh.Close()
			f.zst(t)
			srv := httptest.NewServer(http.FileServer(http.Dir(f.dir)))
			t.Cleanup(srv.Close)
			o.Image = srv.URL + "/pith.img.zst"
			o.TempDir = t.TempDir()
		}},
		{name: "manifest changed after signing", wantIs: ErrSignature, prepare: func(t *testing.T, f *fixture, o *Options) {
			o.Keys = channels.NewKeyring(f.sign(t).Public().(ed25519.PublicKey))
			b, _ := os.ReadFile(f.manifest)
			os.WriteFile(f.manifest, bytes.Replace(b, []byte(`"1.2.3"`), []byte(`"1.2.4"`), 1), 0o644)
		}},
		{name: "signed by an untrusted key", wantIs: ErrSignature, wantErr: "no trusted key", prepare: func(t *testing.T, f *fixture, o *Options) {
			f.sign(t)
			other, _, _ := ed25519.GenerateKey(rand.Reader)
			o.Keys = channels.NewKeyring(other)
		}},
		{name: "signature required, none", wantIs: ErrSignature, prepare: func(t *testing.T, f *fixture, o *Options) {
			o.RequireSignature = true
		}},
		{name: "disk holds a partition table", wantErr: "holds a GPT partition table", prepare: func(t *testing.T, f *fixture, o *Options) {
			run(t, "sgdisk", "-n", "1:1M:+1M", o.Device)
		}},
		{name: "partition table, --force", prepare: func(t *testing.T, f *fixture, o *Options) {
			run(t, "sgdisk", "-n", "1:1M:+1M", o.Device)
			o.Force = true
		}},
		{name: "disk holds a filesystem", wantErr: "holds an ext2/3/4 filesystem", prepare: func(t *testing.T, f *fixture, o *Options) {
			run(t, "mkfs.ext4", "-q", "-F", o.Device)
		}},
		{name: "filesystem, --force", prepare: func(t *testing.T, f *fixture, o *Options) {
			run(t, "mkfs.ext4", "-q", "-F", o.Device)
			o.Force = true
		}},
		{name: "disk too small", disk: 32 * mib, wantErr: "the image needs"},
		{name: "another platform", wantErr: "built for platform qemu, not ec2", prepare: func(t *testing.T, f *fixture, o *Options) {
			o.Platform = "ec2"
		}},
		{name: "user-data a script", wantErr: "takes a #cloud-config (start the file with that line) or an Ignition config", prepare: func(t *testing.T, f *fixture, o *Options) {
			o.UserData = []byte("#!/bin/sh\necho hi\n")
		}},
		{name: "user-data that does not validate", wantErr: "user-data is invalid (nothing written): 2:8: error:", prepare: func(t *testing.T, f *fixture, o *Options) {
			o.UserData = []byte("#cloud-config\nusers: 7\n")
		}},
		{name: "Ignition config", oemFile: OEMIgnition, oemData: ignitionUserData, prepare: func(t *testing.T, f *fixture, o *Options) {
			o.UserData = []byte(ignitionUserData)
		}},
		{name: "Ignition config, gzip-compressed", oemFile: OEMIgnition, oemData: ignitionUserData, prepare: func(t *testing.T, f *fixture, o *Options) {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write([]byte(ignitionUserData))
			zw.Close()
			o.UserData = b.Bytes()
		}},
		{name: "invalid Ignition config", wantErr: "user-data is invalid (nothing written): 1:", prepare: func(t *testing.T, f *fixture, o *Options) {
			o.UserData = []byte(`{"ignition":{"version":"3.4.0"},"systemd":{"units":[{"name":"no-suffix"}]}}`)
		}},
		{name: "image's OEM holds a cloud-config", wantErr: "already holds a cloud-config.yml", prepare: func(t *testing.T, f *fixture, o *Options) {
			f.oemFile(t, OEMUserData, "#cloud-config\n")
			o.UserData = []byte(ignitionUserData)
		}},
		{name: "image's OEM holds a config.ign", wantErr: "already holds a config.ign", prepare: func(t *testing.T, f *fixture, o *Options) {
			f.oemFile(t, OEMIgnition, "{}")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "qemu")
			size := tc.disk
			if size == 0 {
				size = 2 * f.size
			}
			disk := blankDisk(t, size)
			o := Options{Device: disk, Image: f.img, UserData: []byte(userData)}
			if tc.prepare != nil {
				tc.prepare(t, f, &o)
			}
			before := fileSum(t, disk)
			res, err := Install(context.Background(), o)
			if tc.wantErr != "" || tc.wantIs != nil {
				if err == nil {
					t.Fatalf("Install succeeded, want an error")
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("error %q is not %v", err, tc.wantIs)
				}
				if !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q: want one line containing %q", err, tc.wantErr)
				}
				if fileSum(t, disk) != before {
					t.Errorf("the disk was written although Install failed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.oemFile == "" {
				tc.oemFile, tc.oemData = OEMUserData, userData
			}
			checkInstalled(t, f, disk, size, res, tc.oemFile, tc.oemData)
		})
	}
}

// checkInstalled compares the disk with the image and checks the GPT and
// the OEM user-data (oemData in the OEM file oemFile, the other one absent).
func checkInstalled(t *testing.T, f *fixture, disk string, size int64, res *Result, oemFile, oemData string) {
	t.Helper()
	img, _ := os.ReadFile(f.img)
	got := make([]byte, 17*mib)
	dh, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer dh.Close()
	if _, err := io.ReadFull(dh, got); err != nil {
		t.Fatal(err)
	}
	// The USR-A partition (1-9 MiB) is copied as is; the GPT header may differ.
	if !bytes.Equal(got[1*mib:9*mib], img[1*mib:9*mib]) {
		t.Errorf("partition 3 differs from the image")
	}
	tbl, err := pithinit.ReadGPT(dh, 512)
	if err != nil {
		t.Fatalf("installed GPT: %v", err)
	}
	var rootLast uint64
	for _, p := range tbl.Partitions {
		if p.Number == 9 {
			rootLast = p.LastLBA
		}
	}
	out := run(t, "sgdisk", "-v", disk)
	if !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v: %s", out)
	}
	wantGrown := size > f.size
	if grown := res.GrownTo == size; grown != wantGrown {
		t.Errorf("GrownTo %d, disk %d, image %d", res.GrownTo, size, f.size)
	}
	if wantGrown && int64(rootLast+1)*512 < size-mib-33*512 {
		t.Errorf("ROOT ends at sector %d, not near the %d-byte disk's end", rootLast, size)
	}
	back, err := debugfs(context.Background(), false, ext4At(disk, f.oem.Start), "cat /"+oemFile)
	if err != nil || back != oemData {
		t.Errorf("OEM %s: %q, %v; want %q", oemFile, back, err, oemData)
	}
	mode, _ := debugfs(context.Background(), false, ext4At(disk, f.oem.Start), "stat /"+oemFile)
	if !strings.Contains(mode, "Mode:  0600") {
		t.Errorf("OEM %s is not root-only: %s", oemFile, strings.SplitN(mode, "\n", 2)[0])
	}
	for _, other := range oemFiles {
		if _, err := debugfs(context.Background(), false, ext4At(disk, f.oem.Start), "stat /"+other); other != oemFile && err == nil {
			t.Errorf("OEM holds %s too; want %s alone", other, oemFile)
		}
	}
	if res.DataWritten <= 0 || res.DataWritten > f.size {
		t.Errorf("DataWritten %d", res.DataWritten)
	}
}
