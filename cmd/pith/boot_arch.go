package main

// pith boot --arch: which QEMU machine boots the image.

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/manifest"
)

func (o *bootOpts) archFlags(f *pflag.FlagSet) {
	f.StringVar(&o.arch, "arch", "", "machine `ARCH`: amd64 (q35) or arm64 (virt with AAVMF, always TCG on an amd64 host); default: the arch in the pith.manifest.json beside --image, else amd64")
}

// imageManifest is the pith.manifest.json beside --image, or nil: no
// manifest (an image copied alone) or an unreadable one counts as an
// amd64 image with an unsigned boot chain, as images were before they
// named either.
func (o *bootOpts) imageManifest() *manifest.Manifest {
	m, _ := manifest.Read(filepath.Join(filepath.Dir(o.image), manifest.FileName))
	return m
}

// imageArch is --arch, or the architecture the image's manifest m names:
// an arm64 image started on the amd64 machine would sit silently in the
// firmware.
func (o *bootOpts) imageArch(m *manifest.Manifest) (string, error) {
	switch {
	case o.arch != "" && !config.ValidArch(o.arch):
		return "", fmt.Errorf("--arch %q: use one of amd64, arm64", o.arch)
	case o.arch != "" && m != nil && m.Architecture() != o.arch:
		return "", fmt.Errorf("--arch %s, but %s is an %s image (its manifest says so): drop --arch or pass the right image", o.arch, o.image, m.Architecture())
	case o.arch != "":
		return o.arch, nil
	case m != nil:
		return m.Architecture(), nil
	}
	return config.DefaultArch, nil
}
