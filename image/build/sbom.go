package build

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/rootfs"
	"github.com/pith-os/pith/image/sbom"
	"github.com/pith-os/pith/version"
)

// inventory lists what the image holds: the Debian packages of the tree
// with the .deb checksums and archives of the apt indexes they were
// installed from, the kernel, and Pith's binaries with their Go modules.
func inventory(c config.Config, rfs *rootfs.Result, agentBinDir string) (*sbom.Inventory, error) {
	idx, err := rfs.Lists.ReadIndex()
	if err != nil {
		return nil, err
	}
	inv := &sbom.Inventory{Name: "pith", Version: c.Version, Suite: c.Suite, KernelRelease: rfs.KernelVersion, BootLoaders: rfs.BootLoaders}
	deb := func(p rootfs.Package) (sbom.Deb, error) {
		cand, ok := find(idx, p.Name, p.Version, p.Arch)
		if !ok {
			return sbom.Deb{}, fmt.Errorf("package %s %s (%s) is in the image but in none of the archives' indexes (%s): remove the cache's rootfs/ trees and rebuild", p.Name, p.Version, p.Arch, rfs.Lists.Dir)
		}
		d := sbom.Deb{Name: p.Name, Version: p.Version, Arch: p.Arch, Source: p.Source, SourceVersion: p.SourceVersion,
			SHA256: cand.SHA256, URL: cand.URL(), Archive: cand.Archive.Suite}
		if d.Source == "" {
			d.Source, d.SourceVersion = cand.Source, cand.SourceV
		}
		return d, nil
	}
	for _, p := range rfs.Packages {
		d, err := deb(p)
		if err != nil {
			return nil, err
		}
		inv.Packages = append(inv.Packages, d)
	}
	if inv.Kernel, err = deb(rfs.Kernel); err != nil {
		return nil, err
	}
	for _, name := range []string{"pithd", "pithctl", "pith-init"} {
		p := filepath.Join(agentBinDir, name)
		if name == "pith-init" && !exists(p) {
			continue // the initramfs builds its own
		}
		b, err := sbom.ReadBinary(p, version.Version)
		if err != nil {
			return nil, err
		}
		inv.Binaries = append(inv.Binaries, b)
	}
	return inv, nil
}

// find returns the index entry of an installed package version; a version
// both in the release and in a -security archive is the security fix.
func find(idx apt.Index, name, ver, arch string) (apt.Candidate, bool) {
	var found apt.Candidate
	ok := false
	for _, c := range idx[name] {
		if c.Version == ver && c.Arch == arch && (!ok || c.Archive.IsSecurity()) {
			found, ok = c, true
		}
	}
	return found, ok
}

// writeSBOM renders the inventory and writes it into the USR tree (dated
// at the epoch like every file there) and into workDir for publishing.
func writeSBOM(inv *sbom.Inventory, usrDir, workDir string, epoch int64) (string, error) {
	b, err := inv.Document(time.Unix(epoch, 0), "pith-"+version.Version).Marshal()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(usrDir, sbom.ImagePath)
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return "", fmt.Errorf("write the SBOM into the image: %w", err)
	}
	t := time.Unix(epoch, 0)
	for _, p := range []string{dst, filepath.Dir(dst)} {
		if err := os.Chtimes(p, t, t); err != nil {
			return "", err
		}
	}
	out := filepath.Join(workDir, sbom.FileName)
	return out, os.WriteFile(out, b, 0o644)
}

// recordSBOM adds the SBOM, the archives and the package versions to the
// manifest and rewrites it.
func recordSBOM(m *manifest.Manifest, c config.Config, inv *sbom.Inventory, sbomPath, manifestPath string) error {
	n, sum, err := manifest.HashFile(sbomPath)
	if err != nil {
		return err
	}
	m.SBOM = &manifest.Artifact{Name: sbom.FileName, Format: "spdx-json", Size: n, SHA256: sum}
	for _, a := range c.Archives() {
		m.Inputs.Suites = append(m.Inputs.Suites, a.Suite)
	}
	m.Inputs.SecurityMirror = config.NormalizeMirror(c.SecurityMirror)
	m.Packages = map[string]string{inv.Kernel.Name: inv.Kernel.Version}
	for _, p := range inv.Packages {
		m.Packages[p.Name] = p.Version
	}
	b, err := m.Encode()
	if err != nil {
		return err
	}
	return os.WriteFile(manifestPath, b, 0o644)
}

// manifestBootLoaders are the boot loaders as the manifest names them.
func manifestBootLoaders(bls []sbom.BootLoader) []manifest.BootLoader {
	var out []manifest.BootLoader
	for _, b := range bls {
		mb := manifest.BootLoader{Boot: b.Boot, File: b.File, Version: b.Version()}
		for _, p := range b.Packages {
			mb.Packages = append(mb.Packages, manifest.BootPackage{Name: p.Name, Version: p.Version, Arch: p.Arch, Origin: p.Archive})
		}
		out = append(out, mb)
	}
	return out
}

// grubSummary names each boot path's GRUB version and origin for the
// build's SBOM step line.
func grubSummary(inv *sbom.Inventory) string {
	s := ""
	for _, b := range inv.BootLoaders {
		if len(b.Packages) > 0 {
			s += fmt.Sprintf(", %s GRUB %s (%s)", b.Boot, b.Version(), b.Packages[0].Archive)
		}
	}
	return s
}
