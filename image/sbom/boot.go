package sbom

import "strings"

// Boot paths of BootLoader.Boot. BootPXEUEFI is pith live's pith-pxe.efi,
// which UEFI clients fetch over the network: its GRUB is not the ISO's.
const (
	BootBIOS    = "bios"
	BootUEFI    = "uefi"
	BootPXEUEFI = "pxe-uefi"
)

// HostArchive is a Deb's Archive when the package is the build host's
// installed one (dpkg's), not a .deb the build downloaded: it has no URL
// nor .deb checksum.
const HostArchive = "build host"

// BootLoader is the GRUB of one boot path: the Debian packages whose
// modules and grub-mkimage made its image. The image holds no package of
// them, only what grub-mkimage assembled from their files.
type BootLoader struct {
	Boot     string // BootBIOS, BootUEFI or BootPXEUEFI
	File     string // the GRUB image, where the disk holds it
	Packages []Deb  // the modules' package first, then grub-mkimage's
}

// Version is the GRUB version the path boots: its modules' package's.
func (b BootLoader) Version() string {
	if len(b.Packages) == 0 {
		return ""
	}
	return b.Packages[0].Version
}

// bootPrefix starts a boot-loader package's comment: "Boot loader uefi
// (EFI/BOOT/BOOTX64.EFI); Debian archive: ..." or "...; installed on the
// build host".
const (
	bootPrefix = "Boot loader "
	hostNote   = "installed on the build host"
)

// bootPackages renders the boot loaders' packages, each under an ID of its
// path, for Document.
func (inv *Inventory) bootPackages(uniqueID func(...string) string) []Package {
	var out []Package
	for _, b := range inv.BootLoaders {
		for _, p := range b.Packages {
			id := uniqueID("boot", b.Boot, p.Name, p.Arch)
			var pk Package
			if p.Archive == HostArchive {
				// Not from the image's release: no distro in the purl.
				pk = debPackage(id, p, "")
				pk.Comment = hostNote
			} else {
				pk = debPackage(id, p, inv.Suite)
			}
			pk.Comment = bootPrefix + b.Boot + " (" + b.File + "); " + pk.Comment
			out = append(out, pk)
		}
	}
	return out
}

// parseBoot adds p to inv's boot loaders if it is a boot-loader package.
func (inv *Inventory) parseBoot(p Package) bool {
	rest, ok := strings.CutPrefix(p.Comment, bootPrefix)
	if !ok {
		return false
	}
	boot, rest, _ := strings.Cut(rest, " (")
	file, where, _ := strings.Cut(rest, "); ")
	p.Comment = where
	d := debOf(p)
	if where == hostNote {
		d.Archive = HostArchive
	}
	if n := len(inv.BootLoaders); n > 0 && inv.BootLoaders[n-1].Boot == boot {
		inv.BootLoaders[n-1].Packages = append(inv.BootLoaders[n-1].Packages, d)
		return true
	}
	inv.BootLoaders = append(inv.BootLoaders, BootLoader{Boot: boot, File: file, Packages: []Deb{d}})
	return true
}
