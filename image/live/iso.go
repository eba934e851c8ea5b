package live

// The hybrid ISO: El Torito for BIOS (the host's GRUB, as the disk's
// core.img) and for UEFI (the image's UEFI GRUB on a small FAT image, also
// the ESP of a USB stick the ISO is dd'ed to), both standalone images that
// find the ISO by its volume ID and read /boot/grub/grub.cfg. With Secure
// Boot keys the UEFI GRUB is signed and enforces signatures on everything
// it reads, as the disk's does.

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/secureboot"
)

// Boot is how the live media boot.
type Boot struct {
	// EFIGrub makes pith.iso's BOOTX64.EFI and pith-pxe.efi: the image's
	// UEFI GRUB (rootfs.LiveEFIGrub; zero: the build host's).
	EFIGrub bootloader.Grub
	// Keys, when set, sign the UEFI paths for Secure Boot: pith.iso's
	// BOOTX64.EFI and pith-pxe.efi with db, the files their GRUB reads
	// (grub.cfg, the kernel, the initrds) with GRUB's key.
	Keys *secureboot.Keys
}

// ISO tree paths.
const (
	isoBIOSImage = "boot/grub/eltorito.img"
	isoEFIImage  = "boot/efi.img"
)

var grubCfg = template.Must(template.New("grub.cfg").Parse(`# Pith {{.Version}} live: runs from RAM, /usr verified by dm-verity.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout={{.Timeout}}
set default=0
menuentry "Pith {{.Version}} live" --unrestricted {
  linux /pith/vmlinuz {{.Args}}
  initrd /pith/initrd /pith/usr.cpio
}
{{- if not .Secure}}
menuentry "Pith {{.Version}} live (pith.debug: shell on failure)" --unrestricted {
  linux /pith/vmlinuz {{.Args}} pith.debug
  initrd /pith/initrd /pith/usr.cpio
}
{{- end}}
`))

// ISO writes the hybrid live ISO to out (xorriso, mtools, grub-pc-bin):
// the same parts, GRUBs, keys and epoch give the same bytes.
func ISO(ctx context.Context, p *Parts, out, work string, epoch int64, b Boot) error {
	tree := filepath.Join(work, "iso")
	for _, d := range []string{"boot/grub", "pith"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			return err
		}
	}
	// Secure Boot has no debug entry: a shell on failure is a way around
	// the checks, and the signed config is all a console user may pick from.
	var cfg bytes.Buffer
	if err := grubCfg.Execute(&cfg, map[string]any{"Version": p.Version, "Args": KernelArgs(p), "Timeout": 1, "Secure": b.Keys != nil}); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, "boot", "grub", "grub.cfg"), cfg.Bytes(), 0o644); err != nil {
		return err
	}
	for src, dst := range map[string]string{p.Kernel: "vmlinuz", p.Initrd: "initrd"} {
		if err := atomicfile.CopyFile(src, filepath.Join(tree, "pith", dst), 0o644); err != nil {
			return err
		}
	}
	c, err := os.Create(filepath.Join(tree, "pith", "usr.cpio"))
	if err != nil {
		return err
	}
	err = writeUSRCpio(c, p.USR, epoch)
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("USR cpio: %v", err)
	}
	created := time.Unix(epoch, 0)
	var sec *bootloader.SecureConfig
	if b.Keys != nil {
		// The kernel is the image's, signed with db already: the firmware
		// checks it when GRUB 2.12 starts it. SHA-512: only this GRUB
		// checks these, and it hashes the 200 MB USR cpio in two thirds of
		// the time SHA-256 takes.
		for _, f := range []string{"boot/grub/grub.cfg", "pith/vmlinuz", "pith/initrd", "pith/usr.cpio"} {
			if err := b.Keys.SignFileHash(filepath.Join(tree, f), created, crypto.SHA512); err != nil {
				return err
			}
		}
		sec = &bootloader.SecureConfig{PubKey: b.Keys.GrubPub()}
	}
	if err := bootloader.MakeLive(ctx, bootloader.Grub{}, "i386-pc-eltorito", filepath.Join(tree, isoBIOSImage), isoVolumeLabel, nil); err != nil {
		return err
	}
	efi := filepath.Join(work, "BOOTX64.EFI")
	if err := bootloader.MakeLive(ctx, b.EFIGrub, "x86_64-efi", efi, isoVolumeLabel, sec); err != nil {
		return err
	}
	if b.Keys != nil {
		unsigned := efi + ".unsigned"
		if err := os.Rename(efi, unsigned); err != nil {
			return err
		}
		if err := b.Keys.SignEFI(ctx, unsigned, efi, created); err != nil {
			return err
		}
	}
	if err := efiImage(ctx, efi, filepath.Join(tree, isoEFIImage), epoch); err != nil {
		return err
	}
	// The ISO records its files' times: the epoch's, for the same bytes.
	if err := filepath.WalkDir(tree, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(path, created, created)
	}); err != nil {
		return err
	}
	// As grub-mkrescue does it: the BIOS image with its boot info table
	// and GRUB's hybrid MBR (the ISO boots from a USB stick too), the EFI
	// image as an El Torito entry and as a partition.
	mbr := filepath.Join(bootloader.GrubLib, "i386-pc", "boot_hybrid.img")
	cmd := exec.CommandContext(ctx, "xorriso", "-as", "mkisofs", "-graft-points",
		"--modification-date="+time.Unix(epoch, 0).UTC().Format("2006010215040500"),
		"-b", isoBIOSImage, "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "--grub2-boot-info", "--grub2-mbr", mbr,
		"--efi-boot", isoEFIImage, "-efi-boot-part", "--efi-boot-image", "--protective-msdos-label",
		"-V", isoVolumeLabel, "-r", "-o", out, tree)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("xorriso: %v: %s (make deps installs xorriso and grub-pc-bin)", err, lastLines(msg, 3))
	}
	return nil
}

// efiImage writes the FAT image holding EFI/BOOT/BOOTX64.EFI (efi), sized
// to it: mtools, its volume serial and times from epoch.
func efiImage(ctx context.Context, efi, out string, epoch int64) error {
	st, err := os.Stat(efi)
	if err != nil {
		return err
	}
	// 512-byte sectors: the file, plus a MiB for the FAT's tables and
	// directories, rounded up to whole MiB.
	sectors := ((st.Size()+(1<<20))>>20 + 1) << 11
	env := append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	for _, args := range [][]string{
		{"mformat", "-C", "-T", strconv.FormatInt(sectors, 10), "-h", "64", "-s", "32", "-N", fmt.Sprintf("%08x", uint32(epoch)), "-v", "PITH_EFI", "-i", out, "::"},
		{"mmd", "-i", out, "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-i", out, efi, "::/EFI/BOOT/BOOTX64.EFI"},
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s (make deps installs mtools)", args[0], err, lastLines(b, 3))
		}
	}
	return nil
}
