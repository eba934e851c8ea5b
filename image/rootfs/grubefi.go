package rootfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
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

// grubSet is GRUB packages to fetch together, all of one version.
type grubSet struct {
	what  string   // for messages: "UEFI GRUB"
	pkgs  []string // Debian packages, all needed
	dir   string   // unpacked under CACHE/<dir>/<version>_<arch>
	files []string // paths the unpacked tree must hold
}

// efiGrubSet is amd64's UEFI GRUB.
var efiGrubSet = grubSet{what: "UEFI GRUB", pkgs: efiGrubPackages, dir: "grub",
	files: []string{"usr/bin/grub-mkimage", "usr/lib/grub/x86_64-efi/kernel.img"}}

// pickGrub returns the newest version of at least MinEFIGrub for which
// idx has every package of pkgs, and those candidates.
func pickGrub(idx apt.Index, arch string, pkgs []string) (string, []apt.Candidate) {
	best := ""
	for _, c := range idx[pkgs[0]] {
		if c.Arch != arch || sbom.CompareVersions(c.Version, MinEFIGrub) < 0 {
			continue
		}
		if best != "" && sbom.CompareVersions(c.Version, best) <= 0 {
			continue
		}
		if _, ok := findAll(idx, pkgs, c.Version, arch); ok {
			best = c.Version
		}
	}
	if best == "" {
		return "", nil
	}
	cands, _ := findAll(idx, pkgs, best, arch)
	return best, cands
}

func findAll(idx apt.Index, pkgs []string, version, arch string) ([]apt.Candidate, bool) {
	var out []apt.Candidate
	for _, p := range pkgs {
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
// (bookworm has 2.06, bookworm-backports 2.12), and the packages it came
// from. Without such a GRUB (an old release) the host's is used, and
// logged: that image's kernel gets no event log.
func fetchEFIGrub(ctx context.Context, lists apt.Lists, cache, work string, logf func(string, ...any)) (bootloader.Grub, []apt.Candidate, error) {
	dir, cands, err := fetchGrubSet(ctx, lists, cache, work, logf, efiGrubSet)
	if err != nil {
		return bootloader.Grub{}, nil, err
	}
	if dir == "" {
		logf("rootfs: WARNING: no GRUB %s or later in the lists nor in backports: the UEFI image is the host's GRUB, whose linux skips the kernel's EFI stub (no TPM event log)", MinEFIGrub)
		return bootloader.Grub{}, nil, nil
	}
	return bootloader.Grub{Lib: filepath.Join(dir, "usr", "lib", "grub"), MkImage: filepath.Join(dir, "usr", "bin", "grub-mkimage"), Version: cands[0].Version}, cands, nil
}

// fetchGrubSet returns the directory holding set's packages of the newest
// version of at least MinEFIGrub, from the build's lists or else from the
// release's -backports suite, and their candidates; "" if neither has
// one. Only the builder reads the backports lists: the image's packages
// keep coming from its suites. The .debs are downloaded once (SHA-256
// from the signed index) and unpacked under CACHE/<set.dir>/<version>_<arch>.
func fetchGrubSet(ctx context.Context, lists apt.Lists, cache, work string, logf func(string, ...any), set grubSet) (string, []apt.Candidate, error) {
	idx, err := lists.ReadIndex()
	if err != nil {
		return "", nil, err
	}
	version, cands := pickGrub(idx, lists.Arch, set.pkgs)
	where := "the build's lists"
	if version == "" {
		bpo, ok := backportsOf(lists.Archives)
		if !ok {
			return "", nil, fmt.Errorf("no release suite among %v", lists.Archives)
		}
		bl := apt.ListsFor(cache, []config.Archive{bpo}, lists.Arch)
		unlock, err := bl.Lock(ctx)
		if err != nil {
			return "", nil, err
		}
		defer unlock()
		if ferr := bl.Fetch(ctx, work); ferr != nil {
			if _, err := os.Stat(bl.PackagesFile(bpo)); err != nil {
				return "", nil, fmt.Errorf("%s %s+ from %s: %w", set.what, MinEFIGrub, bpo.SourcesLine(), ferr)
			}
			logf("rootfs: WARNING: cannot refresh %s (%v): using its lists fetched before", bpo.SourcesLine(), ferr)
		}
		bidx, err := bl.ReadIndex()
		if err != nil {
			return "", nil, err
		}
		version, cands = pickGrub(bidx, lists.Arch, set.pkgs)
		where = bpo.Suite
	}
	if version == "" {
		return "", nil, nil
	}
	dir := grubDir(cache, set, version, lists.Arch)
	if hasAll(dir, set.files) == nil {
		logf("rootfs: %s %s (%s, cached)", set.what, version, where)
		return dir, cands, nil
	}
	var debs []string
	for _, c := range cands {
		deb := filepath.Join(cache, "debian", "archives", filepath.Base(c.Filename))
		if err := fetchDeb(ctx, c, deb); err != nil {
			return "", nil, err
		}
		debs = append(debs, deb)
	}
	if err := unpackDebs(ctx, debs, dir, set.files); err != nil {
		return "", nil, fmt.Errorf("GRUB %s from %s: %w", version, where, err)
	}
	logf("rootfs: %s %s (%s)", set.what, version, where)
	return dir, cands, nil
}

// unpackDebs unpacks debs into dir (through dir.tmp, so an interrupted
// unpack leaves no dir) and checks that it holds files.
func unpackDebs(ctx context.Context, debs []string, dir string, files []string) error {
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for _, deb := range debs {
		if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
			return fmt.Errorf("unpack %s: %v: %s", deb, err, strings.TrimSpace(string(b)))
		}
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return hasAll(dir, files)
}

// grubDir is where set's packages of version for arch are unpacked.
func grubDir(cache string, set grubSet, version, arch string) string {
	return filepath.Join(cache, set.dir, strings.ReplaceAll(version, ":", "%3a")+"_"+arch)
}

// LiveEFIGrub returns the image's own UEFI GRUB, for pith live's
// pith-pxe.efi: the packages of the SBOM's uefi boot loader (loaders),
// unpacked in cache where pith build left them, or downloaded again
// (checked against the SHA-256 the SBOM records) and unpacked. With it the
// network GRUB is the disk's (2.12: the kernel's EFI stub runs, so it
// gets the TPM event log), not the build host's. A zero Grub and no
// packages when the image's UEFI GRUB is the build host's (an old
// release, or no uefi boot loader): pith-pxe.efi is then the host's too.
func LiveEFIGrub(ctx context.Context, cache string, loaders []sbom.BootLoader, logf func(string, ...any)) (bootloader.Grub, []sbom.Deb, error) {
	i := slices.IndexFunc(loaders, func(b sbom.BootLoader) bool { return b.Boot == sbom.BootUEFI })
	if i < 0 {
		return bootloader.Grub{}, nil, nil
	}
	pkgs := loaders[i].Packages
	var debs []sbom.Deb
	for _, name := range efiGrubSet.pkgs {
		j := slices.IndexFunc(pkgs, func(d sbom.Deb) bool { return d.Name == name })
		if j < 0 || pkgs[j].Archive == sbom.HostArchive {
			return bootloader.Grub{}, nil, nil
		}
		d := pkgs[j]
		if d.URL == "" || d.SHA256 == "" || (len(debs) > 0 && (d.Version != debs[0].Version || d.Arch != debs[0].Arch)) {
			return bootloader.Grub{}, nil, fmt.Errorf("the image's UEFI GRUB packages %+v: want %v of one version, each with its URL and SHA-256", pkgs, efiGrubSet.pkgs)
		}
		debs = append(debs, d)
	}
	dir := grubDir(cache, efiGrubSet, debs[0].Version, debs[0].Arch)
	g := bootloader.Grub{Lib: filepath.Join(dir, "usr", "lib", "grub"), MkImage: filepath.Join(dir, "usr", "bin", "grub-mkimage"), Version: debs[0].Version}
	if hasAll(dir, efiGrubSet.files) == nil {
		return g, debs, nil
	}
	var files []string
	for _, d := range debs {
		f := filepath.Join(cache, "debian", "archives", path.Base(d.URL))
		logf("live: downloading %s %s (the image's UEFI GRUB, not in %s)", d.Name, d.Version, cache)
		if err := fetchFile(ctx, d.URL, d.SHA256, "the image's SBOM", f); err != nil {
			return bootloader.Grub{}, nil, err
		}
		files = append(files, f)
	}
	if err := unpackDebs(ctx, files, dir, efiGrubSet.files); err != nil {
		return bootloader.Grub{}, nil, fmt.Errorf("the image's UEFI GRUB %s: %w", debs[0].Version, err)
	}
	return g, debs, nil
}

func hasAll(dir string, files []string) error {
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return err
		}
	}
	return nil
}
