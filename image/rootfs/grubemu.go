package rootfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/sbom"
)

// GrubEmu is a grub-emu fetched from Debian, with the shared libraries it
// needs that the host lacks.
type GrubEmu struct {
	Path    string
	Version string
	LibDirs []string // for LD_LIBRARY_PATH
}

// Command runs grub-emu with args.
func (g GrubEmu) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, g.Path, args...)
	if len(g.LibDirs) > 0 {
		cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+strings.Join(g.LibDirs, ":"))
	}
	return cmd
}

// Check runs g --version: it must say g's version, of at least
// MinEFIGrub, so a test cannot run the host's older grub-emu unawares.
func (g GrubEmu) Check(ctx context.Context) error {
	v, err := g.Command(ctx, "--version").CombinedOutput()
	if err != nil || sbom.CompareVersions(g.Version, MinEFIGrub) < 0 || !strings.Contains(string(v), "(GRUB) "+g.Version) {
		return fmt.Errorf("grub-emu %s says %q (%v): want the UEFI GRUB, %s or later", g.Version, v, err, MinEFIGrub)
	}
	return nil
}

// TestGrubEmu is FetchGrubEmu for tests: the default build's UEFI GRUB
// under the user's pith cache (Debian's mirror once, then the cache),
// checked (Check) before it is returned.
func TestGrubEmu(ctx context.Context, work string, logf func(string, ...any)) (GrubEmu, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return GrubEmu{}, err
	}
	g, err := FetchGrubEmu(ctx, config.Default(), filepath.Join(cache, "pith"), work, logf)
	if err != nil {
		return GrubEmu{}, fmt.Errorf("grub-emu of the images' UEFI GRUB (needs Debian's mirror once, then the cache): %w", err)
	}
	return g, g.Check(ctx)
}

// grubEmuSet is grub-emu of the UEFI GRUB: Debian's grub-emu has its
// modules built in (unlike grub-emu-lite).
var grubEmuSet = grubSet{what: "grub-emu", pkgs: []string{"grub-emu"}, dir: "grub-emu", files: []string{"usr/bin/grub-emu"}}

// FetchGrubEmu returns grub-emu of the GRUB version amd64 images' UEFI
// GRUB is (fetchEFIGrub's rule: 2.12 or later from c's lists, refreshed as
// a build refreshes them, or else from its release's -backports), cached
// under CACHE/grub-emu/<version>_amd64: tests run the GRUB images boot.
// Without one it is an error: the host's older grub-emu is not that GRUB.
func FetchGrubEmu(ctx context.Context, c config.Config, cache, work string, logf func(string, ...any)) (GrubEmu, error) {
	lists := apt.ListsFor(cache, c.Archives(), apt.Arch)
	lists.Arch = apt.Arch
	if _, err := refreshLists(ctx, lists, work, logf); err != nil {
		return GrubEmu{}, err
	}
	dir, cands, err := fetchGrubSet(ctx, lists, cache, work, logf, grubEmuSet)
	if err != nil {
		return GrubEmu{}, err
	}
	if dir == "" {
		return GrubEmu{}, fmt.Errorf("no grub-emu %s or later in %v nor in its backports", MinEFIGrub, c.Archives())
	}
	idx, err := lists.ReadIndex()
	if err != nil {
		return GrubEmu{}, err
	}
	libs, err := hostMissingLibs(ctx, idx, cands[0], filepath.Join(cache, "grub-emu", "lib"), cache)
	if err != nil {
		return GrubEmu{}, fmt.Errorf("grub-emu %s: %w", cands[0].Version, err)
	}
	return GrubEmu{Path: filepath.Join(dir, "usr", "bin", "grub-emu"), Version: cands[0].Version, LibDirs: libs}, nil
}

// triplets are Debian's multiarch library directories.
var triplets = map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}

// hostMissingLibs fetches the library packages (lib*, libc6 aside) that
// c depends on, directly or through each other, and the host has not
// installed: the newest of each in idx (the release's lists), each
// unpacked once under dir/<package>_<version>_<arch>. It returns their
// library directories. 2.12's grub-emu links libSDL2, while 2.06's (SDL
// 1.2) is what make deps put on build hosts.
func hostMissingLibs(ctx context.Context, idx apt.Index, c apt.Candidate, dir, cache string) ([]string, error) {
	var libDirs []string
	seen := map[string]bool{"libc6": true}
	queue := apt.DependNames(c.Depends)
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] || !strings.HasPrefix(name, "lib") {
			continue
		}
		seen[name] = true
		if out, err := exec.CommandContext(ctx, dpkgQuery, "-W", "-f", "${db:Status-Abbrev}", name).Output(); err == nil && strings.HasPrefix(string(out), "ii") {
			continue // the host's, with its own dependencies
		}
		var best apt.Candidate
		for _, d := range idx[name] {
			if (d.Arch == c.Arch || d.Arch == "all") && (best.Version == "" || sbom.CompareVersions(d.Version, best.Version) > 0) {
				best = d
			}
		}
		if best.Version == "" {
			return nil, fmt.Errorf("it needs %s, which neither the host nor the lists have", name)
		}
		queue = append(queue, apt.DependNames(best.Depends)...)
		into := filepath.Join(dir, strings.ReplaceAll(best.Package+"_"+best.Version+"_"+best.Arch, ":", "%3a"))
		if _, err := os.Stat(into); err != nil {
			deb := filepath.Join(cache, "debian", "archives", filepath.Base(best.Filename))
			if err := fetchDeb(ctx, best, deb); err != nil {
				return nil, err
			}
			// A directory of its own: test processes running side by side
			// may unpack the same package; the first rename wins.
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			tmp, err := os.MkdirTemp(dir, ".unpack-")
			if err != nil {
				return nil, err
			}
			if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
				os.RemoveAll(tmp)
				return nil, fmt.Errorf("unpack %s: %v: %s", deb, err, strings.TrimSpace(string(b)))
			}
			if err := os.Rename(tmp, into); err != nil {
				os.RemoveAll(tmp)
				if _, serr := os.Stat(into); serr != nil {
					return nil, err
				}
			}
		}
		for _, sub := range []string{"usr/lib/" + triplets[c.Arch], "lib/" + triplets[c.Arch]} {
			if _, err := os.Stat(filepath.Join(into, sub)); err == nil {
				libDirs = append(libDirs, filepath.Join(into, sub))
			}
		}
	}
	return libDirs, nil
}
