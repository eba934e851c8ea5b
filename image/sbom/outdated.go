package sbom

import (
	"slices"
	"strings"

	"github.com/pith-os/pith/image/apt"
)

// Update is a package of an image with a newer version in a -security
// archive.
type Update struct {
	Name      string `json:"name"`
	Arch      string `json:"arch"`
	Installed string `json:"installed"`
	Available string `json:"available"`
	Archive   string `json:"archive"`
	// Package names the archive's package when it differs (a kernel with a
	// new ABI is a new package).
	Package string `json:"package,omitempty"`
	// Boot names the boot path (bios, uefi) whose GRUB was made from the
	// package; the image holds only what grub-mkimage took from it.
	Boot string `json:"boot,omitempty"`
}

// Outdated lists the image's packages that a -security archive in idx has a
// newer version of. The kernel counts as outdated when a security archive
// has a newer linux-image package of the same source and flavour; a boot
// loader when one has a newer version of a package its GRUB was made
// from (the build host's included: a rebuild on an updated host fixes it).
func Outdated(inv *Inventory, idx apt.Index) []Update {
	var out []Update
	for _, p := range inv.Packages {
		if u := securityUpdate(p, idx); u != nil {
			out = append(out, *u)
		}
	}
	if k := kernelUpdate(inv, idx); k != nil {
		out = append(out, *k)
	}
	for _, b := range inv.BootLoaders {
		for _, p := range b.Packages {
			if u := securityUpdate(p, idx); u != nil {
				u.Boot = b.Boot
				out = append(out, *u)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Update) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// securityUpdate is the newest version of p in a -security archive of idx
// when it is newer than p's.
func securityUpdate(p Deb, idx apt.Index) *Update {
	var best *apt.Candidate
	for _, c := range idx[p.Name] {
		if c.Arch != p.Arch || !c.Archive.IsSecurity() || CompareVersions(c.Version, p.Version) <= 0 {
			continue
		}
		if best == nil || CompareVersions(c.Version, best.Version) > 0 {
			best = &c
		}
	}
	if best == nil {
		return nil
	}
	return &Update{Name: p.Name, Arch: p.Arch, Installed: p.Version, Available: best.Version, Archive: best.Archive.Suite}
}

// kernelUpdate finds a newer kernel: linux-image-<abi>-<flavour> packages
// of the kernel's source in a security archive.
func kernelUpdate(inv *Inventory, idx apt.Index) *Update {
	k := inv.Kernel
	if k.Name == "" || inv.KernelRelease == "" {
		return nil
	}
	// 6.1.0-57-cloud-amd64 -> flavour "cloud-amd64" (after the ABI number).
	parts := strings.SplitN(inv.KernelRelease, "-", 3)
	if len(parts) < 3 {
		return nil
	}
	flavour := parts[2]
	var best *apt.Candidate
	for name, cands := range idx {
		if !strings.HasPrefix(name, "linux-image-") || !strings.HasSuffix(name, "-"+flavour) || strings.HasSuffix(name, "-dbg") {
			continue
		}
		for _, c := range cands {
			if !c.Archive.IsSecurity() || c.Arch != k.Arch || (k.Source != "" && c.Source != k.Source) || CompareVersions(c.Version, k.Version) <= 0 {
				continue
			}
			if best == nil || CompareVersions(c.Version, best.Version) > 0 {
				best = &c
			}
		}
	}
	if best == nil {
		return nil
	}
	u := &Update{Name: k.Name, Arch: k.Arch, Installed: k.Version, Available: best.Version, Archive: best.Archive.Suite}
	if best.Package != k.Name {
		u.Package = best.Package
	}
	return u
}
