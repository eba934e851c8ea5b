package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/sbom"
)

// TestImageSBOM checks the default image's SBOM against apt itself: libssl3
// and the kernel at the candidate versions apt reports for the configured
// archives (the release, -updates, -security), the manifest pointing at the
// SBOM, each boot path's GRUB packages (checkBootLoaders), the copy in USR
// identical; then `pith outdated` on the fresh build
// (nothing) and on an SBOM edited to an older libssl3 (that package, exit 1).
func TestImageSBOM(t *testing.T) {
	dir := builtImageDir(t)
	bin := os.Getenv("PITH_E2E_BIN_DIR")
	cache := os.Getenv("PITH_E2E_CACHE_DIR")
	if bin == "" || cache == "" {
		t.Fatal("PITH_E2E_BIN_DIR and PITH_E2E_CACHE_DIR must be set: run make e2e")
	}
	m, err := manifest.Read(filepath.Join(dir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if m.SBOM == nil || m.SBOM.Name != sbom.FileName {
		t.Fatalf("the manifest does not point at the SBOM: %+v", m.SBOM)
	}
	sbomPath := filepath.Join(dir, sbom.FileName)
	if n, sum, err := manifest.HashFile(sbomPath); err != nil || n != m.SBOM.Size || sum != m.SBOM.SHA256 {
		t.Errorf("%s: size %d sha256 %s, manifest says %d %s (%v)", sbomPath, n, sum, m.SBOM.Size, m.SBOM.SHA256, err)
	}
	inv, err := sbom.Read(sbomPath)
	if err != nil {
		t.Fatal(err)
	}

	// apt's own answer for the archives the image was built from.
	c := config.Default()
	c.Suite, c.Mirror, c.Suites, c.SecurityMirror = m.Inputs.Suite, m.Inputs.Mirror, m.Inputs.Suites, m.Inputs.SecurityMirror
	if len(c.Archives()) != 3 {
		t.Fatalf("the default image is built from %v, want the release, -updates and -security", m.Inputs.Suites)
	}
	lists := apt.Lists{Dir: apt.ListsDir(cache, c.Archives()), Archives: c.Archives()}
	conf, err := lists.Config(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	candidate := func(pkg string) string {
		cmd := exec.Command("apt-cache", "policy", pkg)
		cmd.Env = append(os.Environ(), "APT_CONFIG="+conf, "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("apt-cache policy %s: %v\n%s", pkg, err, out)
		}
		mm := regexp.MustCompile(`(?m)^\s+Candidate: (\S+)$`).FindSubmatch(out)
		if mm == nil {
			t.Fatalf("apt-cache policy %s has no candidate:\n%s", pkg, out)
		}
		return string(mm[1])
	}
	var ssl sbom.Deb
	for _, p := range inv.Packages {
		if p.Name == "libssl3" {
			ssl = p
		}
	}
	if want := candidate("libssl3"); ssl.Version != want {
		t.Errorf("SBOM: libssl3 %q, apt's candidate is %s", ssl.Version, want)
	}
	if ssl.Source != "openssl" || len(ssl.SHA256) != 64 || ssl.Arch != "amd64" || ssl.Archive == "" {
		t.Errorf("libssl3 entry incomplete: %+v", ssl)
	}
	if want := candidate(m.Inputs.KernelPackage); inv.Kernel.Version != want {
		t.Errorf("SBOM: kernel %s %s, apt's candidate for %s is %s", inv.Kernel.Name, inv.Kernel.Version, m.Inputs.KernelPackage, want)
	}
	if inv.KernelRelease != m.KernelVersion || "linux-image-"+m.KernelVersion != inv.Kernel.Name {
		t.Errorf("SBOM kernel %s (%s), manifest %s", inv.Kernel.Name, inv.KernelRelease, m.KernelVersion)
	}
	if m.Packages["libssl3"] != ssl.Version || m.Packages[inv.Kernel.Name] != inv.Kernel.Version {
		t.Errorf("manifest package versions disagree with the SBOM: libssl3 %q, kernel %q", m.Packages["libssl3"], m.Packages[inv.Kernel.Name])
	}
	checkBootLoaders(t, inv, m)
	bins := map[string]sbom.Binary{}
	for _, b := range inv.Binaries {
		bins[b.Name] = b
	}
	if b := bins["pithd"]; b.Main != "github.com/pith-os/pith" || len(b.Deps) == 0 || !strings.HasPrefix(b.GoVersion, "go") {
		t.Errorf("pithd entry: %+v", b)
	}

	// The node carries the same document.
	img := filepath.Join(dir, "pith.img")
	usrA, _ := m.Partition("USR-A")
	usr := imgExtract(t, img, imgPart{int64(usrA.FirstLBA()), int64(usrA.LastLBA())}, "usr-a")
	onNode := imgTool(t, "unsquashfs", "-cat", usr, sbom.ImagePath)
	if want, _ := os.ReadFile(sbomPath); onNode != string(want) {
		t.Errorf("/usr/%s differs from %s", sbom.ImagePath, sbomPath)
	}

	pith := filepath.Join(bin, "pith")
	run := func(target string) (string, int) {
		cmd := exec.Command(pith, "outdated", "--cache", cache, target)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := run(dir); code != 0 || !strings.Contains(out, "up to date") {
		t.Errorf("pith outdated on a fresh build: exit %d\n%s", code, out)
	}
	// The same SBOM with libssl3 set back to the release's version.
	old := candidateIn(t, lists, "libssl3", "-security")
	b, _ := os.ReadFile(sbomPath)
	edited := bytes.ReplaceAll(b, []byte(`"versionInfo": "`+ssl.Version+`"`), []byte(`"versionInfo": "`+old+`"`))
	if bytes.Equal(edited, b) {
		t.Fatalf("could not edit libssl3's version in %s", sbomPath)
	}
	oldDir := t.TempDir()
	os.WriteFile(filepath.Join(oldDir, sbom.FileName), edited, 0o644)
	mb, _ := os.ReadFile(filepath.Join(dir, manifest.FileName))
	os.WriteFile(filepath.Join(oldDir, manifest.FileName), mb, 0o644)
	out, code := run(oldDir)
	if code != 1 || !strings.Contains(out, "libssl3 "+old+" -> "+ssl.Version) {
		t.Errorf("pith outdated on an SBOM with libssl3 %s: exit %d\n%s", old, code, out)
	}
	t.Logf("outdated on the edited SBOM:\n%s", out)
}

// checkBootLoaders: the SBOM names the BIOS GRUB as the build host's
// grub-pc-bin and grub-common (this host's versions) and the UEFI GRUB as
// grub-efi-amd64-bin and grub-common 2.12 or later downloaded from
// bookworm-backports (URL, SHA-256); the manifest's boot_loaders agree.
func checkBootLoaders(t *testing.T, inv *sbom.Inventory, m *manifest.Manifest) {
	t.Helper()
	if len(inv.BootLoaders) != 2 || len(m.BootLoaders) != 2 {
		t.Fatalf("boot loaders: SBOM %+v, manifest %+v; want BIOS and UEFI", inv.BootLoaders, m.BootLoaders)
	}
	bios, uefi := inv.BootLoaders[0], inv.BootLoaders[1]
	if bios.Boot != sbom.BootBIOS || len(bios.Packages) != 2 || uefi.Boot != sbom.BootUEFI || len(uefi.Packages) != 2 {
		t.Fatalf("boot loaders %+v", inv.BootLoaders)
	}
	for i, name := range []string{"grub-pc-bin", "grub-common"} {
		p := bios.Packages[i]
		host, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", name).Output()
		if err != nil || p.Name != name || p.Version != string(host) || p.Archive != sbom.HostArchive {
			t.Errorf("BIOS GRUB package %d: %+v, want the host's %s %s (%v)", i, p, name, host, err)
		}
	}
	for i, name := range []string{"grub-efi-amd64-bin", "grub-common"} {
		p := uefi.Packages[i]
		if p.Name != name || sbom.CompareVersions(p.Version, "2.12") < 0 || p.Archive != "bookworm-backports" || len(p.SHA256) != 64 || !strings.HasSuffix(p.URL, ".deb") {
			t.Errorf("UEFI GRUB package %d: %+v, want %s 2.12+ from bookworm-backports", i, p, name)
		}
	}
	for i, b := range inv.BootLoaders {
		mb := m.BootLoaders[i]
		if mb.Boot != b.Boot || mb.Version != b.Version() || len(mb.Packages) != len(b.Packages) || mb.Packages[0].Origin != b.Packages[0].Archive {
			t.Errorf("manifest boot loader %+v, SBOM %+v", mb, b)
		}
	}
}

// candidateIn returns the version of pkg in the first archive whose suite
// lacks the suffix (the release itself): older than a security fix.
func candidateIn(t *testing.T, l apt.Lists, pkg, notSuffix string) string {
	t.Helper()
	idx, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range idx[pkg] {
		if !strings.HasSuffix(c.Archive.Suite, notSuffix) {
			return c.Version
		}
	}
	t.Fatalf("%s is in no archive but the %s one", pkg, notSuffix)
	return ""
}
