package rootfs

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/sbom"
)

// machines are the ELF machines of the architectures pith builds for.
var machines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// CheckMachine refuses a binary built for another architecture than the
// image's: it would be copied in and fail only on the booted node.
func CheckMachine(p string, machine elf.Machine, arch string) error {
	if arch == "" {
		arch = config.DefaultArch
	}
	if want, ok := machines[arch]; ok && machine == want {
		return nil
	}
	fix := "make bin"
	if arch != config.DefaultArch {
		fix = "make bin-" + arch + ", which builds them into _out/bin/linux_" + arch
	}
	return fmt.Errorf("%s is built for %v, the image is %s: build with GOARCH=%s (%s)", p, machine, arch, arch, fix)
}

// binfmtDir is where the kernel's binfmt_misc is mounted.
const binfmtDir = "/proc/sys/fs/binfmt_misc"

// foreignArchArgs are mmdebstrap's arguments for arch. A foreign
// architecture's maintainer scripts run under qemu-user, which the kernel
// starts through binfmt_misc: it must be mounted (it is not by default in
// containers) and qemu-user-static's interpreter registered with the F
// flag (loaded once, so it works inside the chroot).
func foreignArchArgs(arch string) ([]string, error) {
	if arch == "" || arch == runtime.GOARCH {
		return nil, nil
	}
	if err := ensureBinfmt(config.QEMUArch(arch)); err != nil {
		return nil, err
	}
	return []string{"--architectures=" + arch}, nil
}

func ensureBinfmt(qarch string) error {
	fix := fmt.Sprintf("install qemu-user-static and binfmt-support (make deps-arm64), mount -t binfmt_misc binfmt_misc %s, update-binfmts --enable qemu-%s", binfmtDir, qarch)
	if _, err := os.Stat(filepath.Join(binfmtDir, "register")); err != nil {
		if err := syscall.Mount("binfmt_misc", binfmtDir, "binfmt_misc", 0, ""); err != nil {
			return fmt.Errorf("building for %s runs its programs under qemu-user through binfmt_misc, which is not mounted and could not be (%v): %s", qarch, err, fix)
		}
	}
	entry := filepath.Join(binfmtDir, "qemu-"+qarch)
	if _, err := os.Stat(entry); err != nil {
		if _, lerr := exec.LookPath("update-binfmts"); lerr == nil {
			_ = exec.Command("update-binfmts", "--enable", "qemu-"+qarch).Run()
		}
	}
	b, err := os.ReadFile(entry)
	if err != nil {
		return fmt.Errorf("no binfmt_misc entry for %s programs (%v): %s", qarch, err, fix)
	}
	s := string(b)
	if !strings.HasPrefix(s, "enabled") {
		return fmt.Errorf("binfmt_misc entry qemu-%s is disabled: update-binfmts --enable qemu-%s", qarch, qarch)
	}
	for _, line := range strings.Split(s, "\n") {
		if flags, ok := strings.CutPrefix(line, "flags: "); ok && !strings.Contains(flags, "F") {
			return fmt.Errorf("binfmt_misc entry qemu-%s lacks the F flag (its interpreter would be looked up inside the chroot): use qemu-user-static's registration (update-binfmts --enable qemu-%s)", qarch, qarch)
		}
	}
	return nil
}

// grubPackages are Debian's GRUB module packages of a foreign architecture,
// fetched from its own apt lists, as Debian builds them only for that
// architecture. amd64's UEFI GRUB is fetchEFIGrub's.
var grubPackages = map[string]string{"arm64": "grub-efi-arm64-bin"}

// FetchGrub returns the GRUB the image's UEFI boot file is made with. For
// amd64: fetchEFIGrub's (2.12 or later, with its grub-mkimage). For a
// foreign architecture: the newest grub-efi-<arch>-bin of the build's own
// lists, downloaded once into the cache (SHA-256 from the signed index),
// unpacked under CACHE/grub/<version>_<arch>, run through the host's
// grub-mkimage of the same release. A zero Grub means the host's. The
// candidates are the packages fetched (none: the host's).
func FetchGrub(ctx context.Context, lists apt.Lists, cache, work string, logf func(string, ...any)) (bootloader.Grub, []apt.Candidate, error) {
	if lists.Arch == "" || lists.Arch == apt.Arch {
		lists.Arch = apt.Arch
		return fetchEFIGrub(ctx, lists, cache, work, logf)
	}
	pkg, ok := grubPackages[lists.Arch]
	if !ok {
		return bootloader.Grub{}, nil, nil
	}
	idx, err := lists.ReadIndex()
	if err != nil {
		return bootloader.Grub{}, nil, err
	}
	var best apt.Candidate
	for _, c := range idx[pkg] {
		if c.Arch == lists.Arch && (best.Version == "" || sbom.CompareVersions(c.Version, best.Version) > 0) {
			best = c
		}
	}
	if best.Version == "" {
		return bootloader.Grub{}, nil, fmt.Errorf("%s: not in the %s apt lists of %s", pkg, lists.Arch, lists.Dir)
	}
	dir := filepath.Join(cache, "grub", strings.ReplaceAll(best.Version, ":", "%3a")+"_"+lists.Arch)
	g := bootloader.Grub{Lib: filepath.Join(dir, "lib", "grub"), Version: best.Version}
	if _, err := os.Stat(g.Lib); err == nil {
		return g, []apt.Candidate{best}, nil
	}
	deb := filepath.Join(cache, "debian", "archives", path.Base(best.Filename))
	if err := fetchDeb(ctx, best, deb); err != nil {
		return bootloader.Grub{}, nil, err
	}
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return bootloader.Grub{}, nil, err
	}
	if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return bootloader.Grub{}, nil, fmt.Errorf("unpack %s: %v: %s", deb, err, strings.TrimSpace(string(b)))
	}
	// Debian's grub-efi-*-bin put their modules in /usr/lib/grub/<format>.
	if err := os.MkdirAll(tmp+"/lib", 0o755); err != nil {
		return bootloader.Grub{}, nil, err
	}
	if err := os.Rename(filepath.Join(tmp, "usr", "lib", "grub"), filepath.Join(tmp, "lib", "grub")); err != nil {
		return bootloader.Grub{}, nil, fmt.Errorf("%s holds no usr/lib/grub: %v", deb, err)
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return bootloader.Grub{}, nil, err
	}
	return g, []apt.Candidate{best}, nil
}

// fetchDeb downloads c's .deb to dst unless a file with its SHA-256 is
// there, checking the hash the (signature-checked) index gives.
func fetchDeb(ctx context.Context, c apt.Candidate, dst string) error {
	if c.SHA256 == "" {
		return fmt.Errorf("%s %s: the index gives no SHA256", c.Package, c.Version)
	}
	return fetchFile(ctx, c.URL(), c.SHA256, "the signed index", dst)
}

// fetchFile downloads url to dst unless a file with SHA-256 sum is there,
// and keeps it only if its SHA-256 is sum, which from (for messages) gave.
func fetchFile(ctx context.Context, url, sum, from, dst string) error {
	if got, err := fileSHA256(dst); err == nil && got == sum {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download %s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("download %s: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		os.Remove(tmp)
		return fmt.Errorf("download %s: SHA-256 %s, %s says %s", url, got, from, sum)
	}
	return os.Rename(tmp, dst)
}
