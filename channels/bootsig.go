package channels

import "io"

// Payloads of a release whose image signs its UEFI boot chain (pith build
// --secure-boot-keys): GRUB's detached signatures of the kernel, the
// initrd and the slot's verity cfg (bootloader.VerityCfg of the release's
// root hash, which names no slot). Nodes whose ESP holds the boot chain's
// public key require them and check them before writing anything.
const (
	PayloadKernelSig = "kernel-sig" // ESP pith/vmlinuz-{a,b}.sig
	PayloadInitrdSig = "initrd-sig" // ESP pith/initrd-{a,b}.sig
	PayloadVeritySig = "verity-sig" // ESP pith/verity-{a,b}.cfg.sig
)

// BootSigPayloads are the three, in the order they are published.
var BootSigPayloads = []string{PayloadKernelSig, PayloadInitrdSig, PayloadVeritySig}

// BootSigSources are the payloads of BootSigPayloads for a release of ir,
// read from its ESP, for an image built with --secure-boot-keys (its ESP
// holds pith/boot.pub); none for an unsigned image.
func (ir *ImageRelease) BootSigSources() ([]PayloadSource, error) {
	pub, err := ir.OpenESPFile("pith/boot.pub")
	if err != nil {
		return nil, nil // an unsigned boot chain
	}
	pub.Close()
	var ps []PayloadSource
	for i, path := range []string{"pith/vmlinuz-a.sig", "pith/initrd-a.sig", "pith/verity-a.cfg.sig"} {
		name := BootSigPayloads[i]
		f, err := ir.OpenESPFile(path)
		if err != nil {
			return nil, err
		}
		f.Close()
		ps = append(ps, PayloadSource{Name: name, File: name, Open: func() (io.ReadCloser, error) { return ir.OpenESPFile(path) }})
	}
	return ps, nil
}
