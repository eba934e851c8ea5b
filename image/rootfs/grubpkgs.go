package rootfs

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/sbom"
)

// dpkgQuery asks the build host's dpkg database (tests replace it).
var dpkgQuery = "dpkg-query"

// BootLoaders are the GRUB packages each boot path of an arch image is made
// from, for the SBOM and the manifest: BIOS (amd64 only) from the host's
// grub-pc-bin and grub-mkimage; UEFI from g and fetched (FetchGrub's), the
// host's packages for the parts g leaves to the host (arm64's grub-mkimage,
// an old release's whole UEFI GRUB).
func BootLoaders(ctx context.Context, arch string, g bootloader.Grub, fetched []apt.Candidate) ([]sbom.BootLoader, error) {
	var out []sbom.BootLoader
	if bootloader.HasBIOS(arch) {
		pkgs, err := hostGrubDebs(ctx, "i386-pc", true, true)
		if err != nil {
			return nil, err
		}
		out = append(out, sbom.BootLoader{Boot: sbom.BootBIOS, File: "BIOS-BOOT core.img, MBR boot.img", Packages: pkgs})
	}
	t, ok := bootloader.EFIFor(arch)
	if !ok {
		return out, nil
	}
	var pkgs []sbom.Deb
	for _, c := range fetched {
		pkgs = append(pkgs, debOfCandidate(c))
	}
	host, err := hostGrubDebs(ctx, t.Format, g.Lib == "", g.MkImage == "")
	if err != nil {
		return nil, err
	}
	pkgs = append(pkgs, host...)
	return append(out, sbom.BootLoader{Boot: sbom.BootUEFI, File: "ESP EFI/BOOT/" + t.File, Packages: pkgs}), nil
}

// LiveBootLoaders are the GRUB packages of pith live's boot paths: the
// ISO's BIOS GRUB (the build host's i386-pc and grub-mkimage, as the
// disk's core.img) and its UEFI GRUB when iso, pith-pxe.efi's
// (BootPXEUEFI) when pxe. Both UEFI paths are efiGrub, the image's own
// UEFI GRUB (LiveEFIGrub), or the host's when that is nil. BIOS PXE
// clients boot through their own iPXE.
func LiveBootLoaders(ctx context.Context, iso, pxe bool, efiGrub []sbom.Deb) ([]sbom.BootLoader, error) {
	var out []sbom.BootLoader
	efi := efiGrub
	if efi == nil && (iso || pxe) {
		var err error
		if efi, err = hostGrubDebs(ctx, "x86_64-efi", true, true); err != nil {
			return nil, err
		}
	}
	if iso {
		bios, err := hostGrubDebs(ctx, "i386-pc", true, true)
		if err != nil {
			return nil, err
		}
		out = append(out,
			sbom.BootLoader{Boot: sbom.BootBIOS, File: "pith.iso El Torito image", Packages: bios},
			sbom.BootLoader{Boot: sbom.BootUEFI, File: "pith.iso EFI/BOOT/BOOTX64.EFI", Packages: efi})
	}
	if pxe {
		out = append(out, sbom.BootLoader{Boot: sbom.BootPXEUEFI, File: "pith-pxe.efi", Packages: efi})
	}
	return out, nil
}

func debOfCandidate(c apt.Candidate) sbom.Deb {
	return sbom.Deb{Name: c.Package, Version: c.Version, Arch: c.Arch, Source: c.Source, SourceVersion: c.SourceV,
		SHA256: c.SHA256, URL: c.URL(), Archive: c.Archive.Suite}
}

// hostGrubDebs returns the host's packages holding GRUB's format modules
// (if modules) and grub-mkimage (if mkimage), as bootloader uses them.
func hostGrubDebs(ctx context.Context, format string, modules, mkimage bool) ([]sbom.Deb, error) {
	var files []string
	if modules {
		files = append(files, filepath.Join(bootloader.GrubLib, format, "kernel.img"))
	}
	if mkimage {
		p, err := exec.LookPath("grub-mkimage")
		if err != nil {
			return nil, fmt.Errorf("grub-mkimage: %w (make deps installs grub-common)", err)
		}
		files = append(files, p)
	}
	var out []sbom.Deb
	for _, f := range files {
		d, err := hostDeb(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// hostDeb returns the installed Debian package holding file. dpkg knows a
// file by the path its package ships, which under merged /usr may differ
// from the one found (/bin/x for /usr/bin/x): both are asked.
func hostDeb(ctx context.Context, file string) (sbom.Deb, error) {
	paths := []string{file}
	if real, err := filepath.EvalSymlinks(file); err == nil && real != file {
		paths = append(paths, real)
	}
	if rest, ok := strings.CutPrefix(file, "/usr"); ok {
		paths = append(paths, rest)
	} else {
		paths = append(paths, "/usr"+file)
	}
	var owner string
	var qerr error
	for _, p := range paths {
		b, err := exec.CommandContext(ctx, dpkgQuery, "-S", p).Output()
		if err != nil {
			qerr = err
			continue
		}
		// "grub-common: /usr/bin/grub-mkimage", "pkg:amd64, other: path"
		first, _, _ := strings.Cut(strings.SplitN(string(b), "\n", 2)[0], ": ")
		owner, _, _ = strings.Cut(first, ", ")
		owner, _, _ = strings.Cut(owner, ":")
		break
	}
	if owner == "" {
		return sbom.Deb{}, fmt.Errorf("%s: no installed Debian package holds it (%s -S: %v): the SBOM names the GRUB packages an image is made from; install GRUB from Debian (make deps)", file, dpkgQuery, qerr)
	}
	b, err := exec.CommandContext(ctx, dpkgQuery, "-W", "-f", "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}", owner).Output()
	if err != nil {
		return sbom.Deb{}, fmt.Errorf("%s -W %s: %v", dpkgQuery, owner, err)
	}
	f := strings.Split(strings.TrimSpace(string(b)), "\t")
	if len(f) != 5 || f[1] == "" {
		return sbom.Deb{}, fmt.Errorf("%s -W %s: unexpected output %q", dpkgQuery, owner, b)
	}
	return sbom.Deb{Name: f[0], Version: f[1], Arch: f[2], Source: f[3], SourceVersion: f[4], Archive: sbom.HostArchive}, nil
}
