package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/pith-os/pith/image/manifest"
)

func TestBootImageArch(t *testing.T) {
	dir := t.TempDir()
	arm := filepath.Join(dir, "arm", "pith.qcow2")
	os.MkdirAll(filepath.Dir(arm), 0o755)
	b, _ := json.Marshal(manifest.Manifest{Schema: manifest.SchemaVersion, Arch: "arm64"})
	os.WriteFile(filepath.Join(dir, "arm", manifest.FileName), b, 0o644)
	bare := filepath.Join(dir, "bare.qcow2")
	tests := []struct {
		name, image, flag, want, err string
	}{
		{name: "manifest says arm64", image: arm, want: "arm64"},
		{name: "flag agrees", image: arm, flag: "arm64", want: "arm64"},
		{name: "flag contradicts the manifest", image: arm, flag: "amd64", err: "--arch amd64, but " + arm + " is an arm64 image (its manifest says so): drop --arch or pass the right image"},
		{name: "no manifest: amd64", image: bare, want: "amd64"},
		{name: "no manifest, flag", image: bare, flag: "arm64", want: "arm64"},
		{name: "unknown arch", image: bare, flag: "s390x", err: `--arch "s390x": use one of amd64, arm64`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &bootOpts{image: tt.image, arch: tt.flag}
			got, err := o.imageArch(o.imageManifest())
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("imageArch: %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("imageArch = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}
