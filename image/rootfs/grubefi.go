package rootfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/sbom"
)

// MinEFIGrub is the oldest GRUB whose x86 UEFI `linux` starts the kernel
// through its EFI stub (firmware LoadImage/StartImage, the initrd handed
// over by LoadFile2). GRUB 2.06 exits boot services itself and jumps to
// the kernel's 32-bit entry: the stub never runs, so the kernel gets no
// TPM event log (binary_bios_measurements) and the firmware never checks
// the kernel's signature against db.
const MinEFIGrub = "2.12"

// efiGrubPackages hold the x86_64-efi modules and, of the same version,
// grub-mkimage: the host's 2.06 one must not assemble 2.12 modules.
var efiGrubPackages = []string{"grub-efi-amd64-bin", "grub-common"}

// backportsOf is the -backports suite of the lists' release, on the
// release's mirror.
func backportsOf(archives []config.Archive) (config.Archive, bool) {
	for _, a := range archives {
		if !strings.Contains(a.Suite, "-") {
			return config.Archive{URI: a.URI, Suite: a.Suite + "-backports"}, true
		}
	}
	return config.Archive{}, false
}

// pickEFIGrub returns the newest version of at least MinEFIGrub for which
// idx has every efiGrubPackages package, and those candidates.
func pickEFIGrub(idx apt.Index, arch string) (string, []apt.Candidate) {
	best, pkg := "", efiGrubPackages[0]
	for _, c := range idx[pkg] {
		if c.Arch != arch || sbom.CompareVersions(c.Version, MinEFIGrub) < 0 {
			continue
		}
		if best != "" && sbom.CompareVersions(c.Version, best) <= 0 {
			continue
		}
		if _, ok := findAll(idx, c.Version, arch); ok {
			best = c.Version
		}
	}
	if best == "" {
		return "", nil
	}
	cands, _ := findAll(idx, best, arch)
	return best, cands
}

func findAll(idx apt.Index, version, arch string) ([]apt.Candidate, bool) {
	var out []apt.Candidate
	for _, p := range efiGrubPackages {
		c, ok := idx.Find(p, version, arch)
		if !ok {
			return nil, false
		}
		out = append(out, c)
	}
	return out, true
}

// fetchEFIGrub returns amd64's UEFI GRUB: the newest grub-efi-amd64-bin of
// at least MinEFIGrub, with grub-common of its version, from the build's
// lists (trixie has 2.12) or else from the release's -backports suite
// (bookworm has 2.06, bookworm-backports 2.12). Only the builder reads
// the backports lists: the image's packages keep coming from its suites.
// Both .debs are downloaded once (SHA-256 from the signed index) and
// unpacked under CACHE/grub/<version>_amd64. Without such a GRUB (an old
// release) the host's is used, and logged: that image's kernel gets no
// event log.
func fetchEFIGrub(ctx context.Context, lists apt.Lists, cache, work string, logf func(string, ...any)) (bootloader.Grub, error) {
	idx, err := lists.ReadIndex()
	if err != nil {
		return bootloader.Grub{}, err
	}
	version, cands := pickEFIGrub(idx, lists.Arch)
	where := "the build's lists"
	if version == "" {
		bpo, ok := backportsOf(lists.Archives)
		if !ok {
			return bootloader.Grub{}, fmt.Errorf("no release suite among %v", lists.Archives)
		}
		bl := apt.ListsFor(cache, []config.Archive{bpo}, lists.Arch)
		unlock, err := bl.Lock(ctx)
		if err != nil {
			return bootloader.Grub{}, err
		}
		defer unlock()
		if ferr := bl.Fetch(ctx, work); ferr != nil {
			if _, err := os.Stat(bl.PackagesFile(bpo)); err != nil {
				return bootloader.Grub{}, fmt.Errorf("UEFI GRUB %s+ from %s: %w", MinEFIGrub, bpo.SourcesLine(), ferr)
			}
			logf("rootfs: WARNING: cannot refresh %s (%v): using its lists fetched before", bpo.SourcesLine(), ferr)
		}
		bidx, err := bl.ReadIndex()
		if err != nil {
			return bootloader.Grub{}, err
		}
		version, cands = pickEFIGrub(bidx, lists.Arch)
		where = bpo.Suite
	}
	if version == "" {
		logf("rootfs: WARNING: no GRUB %s or later in the lists nor in backports: the UEFI image is the host's GRUB, whose linux skips the kernel's EFI stub (no TPM event log)", MinEFIGrub)
		return bootloader.Grub{}, nil
	}
	dir := filepath.Join(cache, "grub", strings.ReplaceAll(version, ":", "%3a")+"_"+lists.Arch)
	g := bootloader.Grub{Lib: filepath.Join(dir, "usr", "lib", "grub"), MkImage: filepath.Join(dir, "usr", "bin", "grub-mkimage"), Version: version}
	if _, err := os.Stat(g.MkImage); err == nil {
		if _, err := os.Stat(filepath.Join(g.Lib, "x86_64-efi", "kernel.img")); err == nil {
			logf("rootfs: UEFI GRUB %s (%s, cached)", version, where)
			return g, nil
		}
	}
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	for _, c := range cands {
		deb := filepath.Join(cache, "debian", "archives", filepath.Base(c.Filename))
		if err := fetchDeb(ctx, c, deb); err != nil {
			return bootloader.Grub{}, err
		}
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return bootloader.Grub{}, err
		}
		if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
			return bootloader.Grub{}, fmt.Errorf("unpack %s: %v: %s", deb, err, strings.TrimSpace(string(b)))
		}
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return bootloader.Grub{}, err
	}
	for _, p := range []string{g.MkImage, filepath.Join(g.Lib, "x86_64-efi", "kernel.img")} {
		if _, err := os.Stat(p); err != nil {
			return bootloader.Grub{}, fmt.Errorf("GRUB %s from %s: %w", version, where, err)
		}
	}
	logf("rootfs: UEFI GRUB %s (%s)", version, where)
	return g, nil
}
