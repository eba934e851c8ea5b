package build

import (
	"github.com/pith-os/pith/atomicfile"
	"os"
	"path/filepath"
	"time"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/secureboot"
)

// signBootChain signs what the UEFI boot runs: GRUB and the kernel with db
// (Authenticode), then grub.cfg, slot a's verity cfg, kernel and initrd
// with GRUB's OpenPGP key, as check_signatures=enforce requires.
func (a *assembly) signBootChain() error {
	k := a.in.SecureBoot
	unsigned := a.w("BOOTX64.EFI.unsigned")
	if err := os.Rename(a.w("BOOTX64.EFI"), unsigned); err != nil {
		return err
	}
	if err := k.SignEFI(a.ctx, unsigned, a.w("BOOTX64.EFI"), time.Unix(a.c.Epoch, 0)); err != nil {
		return err
	}
	if err := k.SignEFI(a.ctx, a.in.KernelPath, a.w("vmlinuz-a"), time.Unix(a.c.Epoch, 0)); err != nil {
		return err
	}
	if err := atomicfile.CopyFile(a.in.InitrdPath, a.w("initrd-a"), 0o644); err != nil {
		return err
	}
	for _, f := range []string{"grub.cfg", "verity-a.cfg", "vmlinuz-a", "initrd-a"} {
		if err := k.SignFile(a.w(f), time.Unix(a.c.Epoch, 0)); err != nil {
			return err
		}
	}
	// The certificates beside the image: what pith boot --secure-boot
	// enrolls, and what an operator enrolls in a real machine's firmware.
	for _, r := range secureboot.Roles {
		name := SecureBootCertPrefix + secureboot.CertFile(r)
		if err := atomicfile.CopyFile(filepath.Join(k.Dir, secureboot.CertFile(r)), a.w(name), 0o644); err != nil {
			return err
		}
		a.artifacts[name] = a.w(name)
	}
	return nil
}

// Where the ESP of a Secure Boot image holds the public keys of its chain.
const (
	SecureBootGrubPub = "pith/boot.pub"
	SecureBootDBCert  = "pith/db.crt"
	// SecureBootCertPrefix names the certificates written beside the image
	// (pith-sb-PK.crt, pith-sb-KEK.crt, pith-sb-db.crt).
	SecureBootCertPrefix = "pith-sb-"
)

func (a *assembly) secureBootRecord() *manifest.SecureBoot {
	k := a.in.SecureBoot
	if k == nil {
		return nil
	}
	sb := &manifest.SecureBoot{Certs: map[string]string{}}
	for r, c := range k.Certs {
		sb.Certs[r] = secureboot.Fingerprint(c)
	}
	return sb
}
