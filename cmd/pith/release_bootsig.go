package main

import (
	"io"

	"github.com/pith-os/pith/channels"
)

// bootSigPayloads are the boot chain's signatures, for an image built
// with --secure-boot-keys (its ESP holds pith/boot.pub): nodes of such
// images refuse releases without them (agent/update bootsig.go).
func bootSigPayloads(img *channels.ImageRelease) ([]channels.PayloadSource, error) {
	pub, err := img.OpenESPFile("pith/boot.pub")
	if err != nil {
		return nil, nil // an unsigned boot chain
	}
	pub.Close()
	var ps []channels.PayloadSource
	for i, path := range []string{"pith/vmlinuz-a.sig", "pith/initrd-a.sig", "pith/verity-a.cfg.sig"} {
		name := channels.BootSigPayloads[i]
		f, err := img.OpenESPFile(path)
		if err != nil {
			return nil, err
		}
		f.Close()
		ps = append(ps, channels.PayloadSource{Name: name, File: name, Open: func() (io.ReadCloser, error) { return img.OpenESPFile(path) }})
	}
	return ps, nil
}
