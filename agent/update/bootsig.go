package update

// Updates under Secure Boot: GRUB boots a slot only with good signatures
// of its kernel, initrd and verity cfg by the key embedded in the signed
// GRUB (image/secureboot). A machine whose ESP carries that key
// (pith/boot.pub) takes only releases carrying those signatures by it,
// checked once the kernel and initrd are downloaded, before the USR is and
// before anything is written, so a release built with other keys is
// refused instead of leaving a slot GRUB rejects. GRUB 2.12 then hands
// the kernel to the firmware, which runs it only with an Authenticode
// signature by db: a machine whose ESP carries db's certificate
// (pith/db.crt) checks that too, at the same point (checkKernelDB).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/secureboot"
)

// bootPub is the boot chain's public key on the ESP, nil on a machine
// whose boot chain is not signed.
func (a *Agent) bootPub() ([]byte, error) { return a.espKey("boot.pub") }

// dbCert is the Secure Boot db certificate on the ESP (image/build's
// SecureBootDBCert), nil on a machine whose boot chain is not signed.
func (a *Agent) dbCert() ([]byte, error) { return a.espKey("db.crt") }

// espKey reads a file of the ESP's pith/ directory, nil if there is none.
func (a *Agent) espKey(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(a.slots.KernelPath("a")), name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// checkKernelDB refuses, on a machine with db's certificate on the ESP, a
// release whose kernel the firmware would not run under Secure Boot: one
// without an Authenticode signature by db (or by a certificate db issued)
// over the kernel as downloaded.
func (a *Agent) checkKernelDB(m *channels.Manifest, pl *bootPayloads) error {
	db, err := a.dbCert()
	if err != nil || db == nil {
		return err
	}
	kernel, err := pl.bytes(channels.PayloadKernel)
	if err != nil {
		return err
	}
	if err := secureboot.VerifyEFI(db, kernel); err != nil {
		return fmt.Errorf("update: release %s refused before writing anything: its kernel is not signed by this machine's Secure Boot db key (%v)", m.Version, err)
	}
	return nil
}

// downloadBootSigs fetches the release's boot signatures into files and
// checks them against the payloads they sign, on a machine with a signed
// boot chain.
func (a *Agent) downloadBootSigs(ctx context.Context, c *channels.Client, m *channels.Manifest, dl string, files map[string]string, pl *bootPayloads) error {
	pub, err := a.bootPub()
	if err != nil || pub == nil {
		return err
	}
	for _, name := range channels.BootSigPayloads {
		p, ok := m.Payload(name)
		if !ok {
			return fmt.Errorf("update: release %s has no %s payload: this machine's boot chain is signed (Secure Boot) and GRUB would refuse the slot; publish it from an image built with the same pith build --secure-boot-keys", m.Version, name)
		}
		if files[name], err = c.Download(ctx, p, dl); err != nil {
			return fmt.Errorf("update: %s: %w", m.Version, err)
		}
	}
	vcfg, err := bootloader.VerityCfg(m.USRVerityHash)
	if err != nil {
		return fmt.Errorf("update: release %s: %w", m.Version, err)
	}
	for _, s := range []struct {
		sig, what string
		data      func() ([]byte, error)
	}{
		{channels.PayloadKernelSig, "kernel", func() ([]byte, error) { return pl.bytes(channels.PayloadKernel) }},
		{channels.PayloadInitrdSig, "initrd", func() ([]byte, error) { return pl.bytes(channels.PayloadInitrd) }},
		{channels.PayloadVeritySig, "dm-verity root hash", func() ([]byte, error) { return vcfg, nil }},
	} {
		data, err := s.data()
		if err != nil {
			return err
		}
		sig, err := pl.bytes(s.sig)
		if err != nil {
			return err
		}
		if err := secureboot.VerifyDetached(pub, data, sig); err != nil {
			return fmt.Errorf("update: release %s refused before writing anything: its %s is %v", m.Version, s.what, err)
		}
	}
	return nil
}

// bootPayloads reads downloaded payloads decompressed, each once: the
// kernel (14 MiB) is read by both GRUB's signature check and db's.
type bootPayloads struct {
	m     *channels.Manifest
	files map[string]string
	read  map[string][]byte
}

func newBootPayloads(m *channels.Manifest, files map[string]string) *bootPayloads {
	return &bootPayloads{m: m, files: files, read: map[string][]byte{}}
}

func (pl *bootPayloads) bytes(name string) ([]byte, error) {
	if b, ok := pl.read[name]; ok {
		return b, nil
	}
	p, _ := pl.m.Payload(name)
	f, err := os.Open(pl.files[name])
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := channels.Decompress(f, p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		return nil, fmt.Errorf("update: %s payload: %w", name, err)
	}
	pl.read[name] = b.Bytes()
	return b.Bytes(), nil
}

// installBootSigs writes the signatures beside the target slot's kernel,
// initrd and (before SetVerity writes it) verity cfg.
func (a *Agent) installBootSigs(m *channels.Manifest, target string, files map[string]string) error {
	if files[channels.PayloadKernelSig] == "" {
		return nil // not a signed boot chain: downloadBootSigs fetched none
	}
	verity := filepath.Join(filepath.Dir(a.slots.KernelPath(target)), filepath.Base(bootloader.VerityCfgPath(target)))
	for name, dst := range map[string]string{
		channels.PayloadKernelSig: a.slots.KernelPath(target), channels.PayloadInitrdSig: a.slots.InitrdPath(target), channels.PayloadVeritySig: verity,
	} {
		p, _ := m.Payload(name)
		if err := channels.InstallFile(files[name], p, dst+secureboot.SigSuffix); err != nil {
			return fmt.Errorf("update: install %s: %w", name, err)
		}
	}
	return nil
}
