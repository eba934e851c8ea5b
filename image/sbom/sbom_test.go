package sbom

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/config"
)

const (
	sumA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	sumB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// mod is a module with a go.sum hash made up from its path and version.
func mod(path, version string) Module {
	h := sha256.Sum256([]byte(path + "@" + version))
	return Module{Path: path, Version: version, Sum: "h1:" + base64.StdEncoding.EncodeToString(h[:])}
}

func sample() *Inventory {
	return &Inventory{
		Name: "pith", Version: "1.0.0", Suite: "bookworm", KernelRelease: "6.1.0-50-cloud-amd64",
		Kernel: Deb{Name: "linux-image-6.1.0-50-cloud-amd64", Version: "6.1.176-1", Arch: "amd64", Source: "linux-signed-amd64", SourceVersion: "6.1.176+1",
			SHA256: sumA, URL: "http://deb.debian.org/debian/pool/main/l/linux-signed-amd64/x.deb", Archive: "bookworm"},
		Packages: []Deb{
			{Name: "curl", Version: "7.88.1-10+deb12u14", Arch: "amd64", Source: "curl", SourceVersion: "7.88.1-10+deb12u14", SHA256: sumA, Archive: "bookworm"},
			{Name: "libssl3", Version: "3.0.20-1~deb12u2", Arch: "amd64", Source: "openssl", SourceVersion: "3.0.20-1~deb12u2", SHA256: sumB,
				URL: "http://deb.debian.org/debian/pool/main/o/openssl/libssl3_3.0.20-1~deb12u2_amd64.deb", Archive: "bookworm"},
			{Name: "libstdc++6", Version: "12.2.0-14+deb12u1", Arch: "amd64", Source: "gcc-12", SourceVersion: "12.2.0-14+deb12u1", SHA256: sumA, Archive: "bookworm"},
			{Name: "tzdata", Version: "2025b-0+deb12u1", Arch: "all", Source: "tzdata", SourceVersion: "2025b-0+deb12u1", SHA256: sumB, Archive: "bookworm-updates"},
		},
		Binaries: []Binary{
			{Name: "pithd", Version: "1.0.0", SHA256: sumA, GoVersion: "go1.26.8", Main: "github.com/pith-os/pith",
				Deps: []Module{mod("github.com/hashicorp/raft", "v1.7.3"), mod("golang.org/x/sys", "v0.50.0")}},
			{Name: "pithctl", Version: "1.0.0", SHA256: sumB, GoVersion: "go1.26.8", Main: "github.com/pith-os/pith",
				Deps: []Module{mod("golang.org/x/sys", "v0.50.0")}},
		},
		BootLoaders: []BootLoader{
			{Boot: BootBIOS, File: "BIOS-BOOT core.img, MBR boot.img", Packages: []Deb{
				{Name: "grub-pc-bin", Version: "2.06-13+deb12u2", Arch: "amd64", Source: "grub2", SourceVersion: "2.06-13+deb12u2", Archive: HostArchive},
				{Name: "grub-common", Version: "2.06-13+deb12u2", Arch: "amd64", Source: "grub2", SourceVersion: "2.06-13+deb12u2", Archive: HostArchive}}},
			{Boot: BootUEFI, File: "ESP EFI/BOOT/BOOTX64.EFI", Packages: []Deb{
				{Name: "grub-efi-amd64-bin", Version: "2.12-1~bpo12+1", Arch: "amd64", Source: "grub2", SourceVersion: "2.12-1~bpo12+1", SHA256: sumA,
					URL: "http://deb.debian.org/debian/pool/main/g/grub2/grub-efi-amd64-bin_2.12-1~bpo12+1_amd64.deb", Archive: "bookworm-backports"},
				{Name: "grub-common", Version: "2.12-1~bpo12+1", Arch: "amd64", Source: "grub2", SourceVersion: "2.12-1~bpo12+1", SHA256: sumB,
					URL: "http://deb.debian.org/debian/pool/main/g/grub2/grub-common_2.12-1~bpo12+1_amd64.deb", Archive: "bookworm-backports"}}},
		},
	}
}

func TestDocumentValid(t *testing.T) {
	created := time.Unix(1767225600, 0)
	d := sample().Document(created, "pith-test")
	if err := d.Validate(); err != nil {
		t.Fatalf("Pith's own document is invalid: %v", err)
	}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Stable for equal content: the namespace and timestamp come from the
	// content and the epoch.
	b2, _ := sample().Document(created, "pith-test").Marshal()
	if string(b) != string(b2) {
		t.Errorf("two documents of the same inventory differ")
	}
	// The JSON carries SPDX's required document fields under their names.
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace", "creationInfo", "packages", "relationships"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("document lacks %s", k)
		}
	}
	if raw["creationInfo"].(map[string]any)["created"] != "2026-01-01T00:00:00Z" {
		t.Errorf("created = %v", raw["creationInfo"])
	}
	// Relationships: the document describes the image, the image contains
	// every package, each binary statically links its modules (shared
	// modules are one package).
	rel := map[string]bool{}
	for _, r := range d.Relationships {
		rel[r.Element+" "+r.Type+" "+r.Related] = true
	}
	ids := map[string]string{}
	for _, p := range d.Packages {
		ids[p.Name] = p.SPDXID
	}
	want := []string{
		"SPDXRef-DOCUMENT DESCRIBES SPDXRef-image",
		"SPDXRef-image CONTAINS SPDXRef-kernel",
		"SPDXRef-image CONTAINS " + ids["libssl3"],
		"SPDXRef-image CONTAINS " + ids["libstdc++6"],
		"SPDXRef-image CONTAINS " + ids["pithd"],
		ids["pithd"] + " STATIC_LINK " + ids["golang.org/x/sys"],
		ids["pithctl"] + " STATIC_LINK " + ids["golang.org/x/sys"],
		ids["pithd"] + " STATIC_LINK " + ids["stdlib"],
	}
	for _, w := range want {
		if !rel[w] {
			t.Errorf("no relationship %q", w)
		}
	}
	// Each boot path's GRUB packages, with where they came from: grub-common
	// of two versions is two packages.
	boot := map[string]Package{}
	for _, p := range d.Packages {
		if strings.HasPrefix(p.SPDXID, "SPDXRef-boot-") {
			boot[p.SPDXID] = p
			if !rel["SPDXRef-image CONTAINS "+p.SPDXID] {
				t.Errorf("the image does not contain %s", p.SPDXID)
			}
		}
	}
	for id, w := range map[string]struct{ version, comment, purl, dl string }{
		"SPDXRef-boot-bios-grub-pc-bin-amd64": {"2.06-13+deb12u2", "Boot loader bios (BIOS-BOOT core.img, MBR boot.img); installed on the build host",
			"pkg:deb/debian/grub-pc-bin@2.06-13+deb12u2?arch=amd64&upstream=grub2", NoAssertion},
		"SPDXRef-boot-bios-grub-common-amd64": {"2.06-13+deb12u2", "Boot loader bios (BIOS-BOOT core.img, MBR boot.img); installed on the build host",
			"pkg:deb/debian/grub-common@2.06-13+deb12u2?arch=amd64&upstream=grub2", NoAssertion},
		"SPDXRef-boot-uefi-grub-efi-amd64-bin-amd64": {"2.12-1~bpo12+1", "Boot loader uefi (ESP EFI/BOOT/BOOTX64.EFI); Debian archive: bookworm-backports",
			"pkg:deb/debian/grub-efi-amd64-bin@2.12-1~bpo12+1?arch=amd64&distro=bookworm&upstream=grub2",
			"http://deb.debian.org/debian/pool/main/g/grub2/grub-efi-amd64-bin_2.12-1~bpo12+1_amd64.deb"},
		"SPDXRef-boot-uefi-grub-common-amd64": {"2.12-1~bpo12+1", "Boot loader uefi (ESP EFI/BOOT/BOOTX64.EFI); Debian archive: bookworm-backports",
			"pkg:deb/debian/grub-common@2.12-1~bpo12+1?arch=amd64&distro=bookworm&upstream=grub2",
			"http://deb.debian.org/debian/pool/main/g/grub2/grub-common_2.12-1~bpo12+1_amd64.deb"},
	} {
		p, ok := boot[id]
		if !ok {
			t.Errorf("no boot loader package %s (have %v)", id, boot)
			continue
		}
		if p.VersionInfo != w.version || p.Comment != w.comment || p.ExternalRefs[0].Locator != w.purl || p.DownloadLocation != w.dl {
			t.Errorf("%s: %+v, want %+v", id, p, w)
		}
	}
	if len(boot) != 4 {
		t.Errorf("%d boot loader packages, want 4", len(boot))
	}
	if ids["libstdc++6"] != "SPDXRef-deb-libstdc--6-amd64" {
		t.Errorf("libstdc++6's SPDXID = %q", ids["libstdc++6"])
	}
	n := 0
	for _, p := range d.Packages {
		if p.Name == "golang.org/x/sys" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("golang.org/x/sys is %d packages, want 1", n)
	}
	var ssl Package
	for _, p := range d.Packages {
		if p.Name == "libssl3" {
			ssl = p
		}
	}
	if ssl.VersionInfo != "3.0.20-1~deb12u2" || ssl.Checksums[0] != (Checksum{"SHA256", sumB}) || ssl.SourceInfo != "built package from: openssl 3.0.20-1~deb12u2" ||
		ssl.ExternalRefs[0].Locator != "pkg:deb/debian/libssl3@3.0.20-1~deb12u2?arch=amd64&distro=bookworm&upstream=openssl" {
		t.Errorf("libssl3 package: %+v", ssl)
	}
}

func TestRoundTrip(t *testing.T) {
	inv := sample()
	b, err := inv.Document(time.Unix(1767225600, 0), "pith-test").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Read(filepath.Dir(path)) // a directory holding the SBOM
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, inv) {
		t.Errorf("read back:\n got %+v\nwant %+v", got, inv)
	}
}

// The primary package's comment says what the SBOM describes, and the
// live media's reads back as such.
func TestMediaComment(t *testing.T) {
	for _, tc := range []struct{ media, comment string }{
		{"", "Pith disk image built from Debian bookworm"},
		{MediaLive, "Pith live media (ISO, PXE files) built from Debian bookworm"},
	} {
		inv := sample()
		inv.Media = tc.media
		d := inv.Document(time.Unix(1767225600, 0), "pith-test")
		if c := d.Packages[0].Comment; c != tc.comment {
			t.Errorf("media %q: comment %q, want %q", tc.media, c, tc.comment)
		}
		got, err := Parse(d)
		if err != nil {
			t.Fatal(err)
		}
		if got.Media != tc.media || got.Suite != "bookworm" {
			t.Errorf("media %q: read back media %q, suite %q", tc.media, got.Media, got.Suite)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Document)
		want string
	}{
		{"version", func(d *Document) { d.SPDXVersion = "SPDX-2.2" }, `spdxVersion is "SPDX-2.2"`},
		{"license", func(d *Document) { d.DataLicense = "MIT" }, "dataLicense"},
		{"document id", func(d *Document) { d.SPDXID = "SPDXRef-doc" }, "the document's SPDXID"},
		{"no name", func(d *Document) { d.Name = "" }, "the document has no name"},
		{"namespace with #", func(d *Document) { d.DocumentNamespace += "#x" }, "documentNamespace"},
		{"namespace not a URI", func(d *Document) { d.DocumentNamespace = "pith" }, "documentNamespace"},
		{"created", func(d *Document) { d.CreationInfo.Created = "2026-01-01 00:00" }, "creationInfo.created"},
		{"no creators", func(d *Document) { d.CreationInfo.Creators = nil }, "no creators"},
		{"creator prefix", func(d *Document) { d.CreationInfo.Creators = []string{"pith"} }, `creator "pith"`},
		{"bad id", func(d *Document) { d.Packages[1].SPDXID = "SPDXRef-a_b" }, "is not SPDXRef-"},
		{"duplicate id", func(d *Document) { d.Packages[2].SPDXID = d.Packages[1].SPDXID }, "is used twice"},
		{"package name", func(d *Document) { d.Packages[1].Name = "" }, "no name"},
		{"download location", func(d *Document) { d.Packages[1].DownloadLocation = "" }, "no downloadLocation"},
		{"files analyzed", func(d *Document) { d.Packages[1].FilesAnalyzed = true }, "filesAnalyzed"},
		{"checksum algorithm", func(d *Document) { d.Packages[1].Checksums = []Checksum{{"SHA-256", sumA}} }, `algorithm "SHA-256"`},
		{"checksum length", func(d *Document) { d.Packages[1].Checksums = []Checksum{{"SHA256", "abc"}} }, "SHA256 checksum"},
		{"purl with space", func(d *Document) { d.Packages[1].ExternalRefs[0].Locator = "pkg:deb/a b" }, "external reference"},
		{"purpose", func(d *Document) { d.Packages[0].PrimaryPackagePurpose = "OS" }, "primaryPackagePurpose"},
		{"supplier", func(d *Document) { d.Packages[1].Supplier = "Debian" }, "supplier"},
		{"dangling relationship", func(d *Document) { d.Relationships[1].Related = "SPDXRef-nothing" }, "no element SPDXRef-nothing"},
		{"relationship type", func(d *Document) { d.Relationships[1].Type = "HAS" }, "unknown type"},
		{"describes nothing", func(d *Document) { d.Relationships = d.Relationships[1:] }, "DESCRIBES no package"},
	}
	for _, tt := range tests {
		d := sample().Document(time.Unix(1767225600, 0), "pith-test")
		tt.edit(d)
		err := d.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
		if _, err := d.Marshal(); err == nil {
			t.Errorf("%s: Marshal wrote an invalid document", tt.name)
		}
	}
}

func TestCompare(t *testing.T) {
	old := sample()
	new := sample()
	new.Version = "1.0.1"
	new.Packages[1].Version, new.Packages[1].Archive = "3.0.22-1~deb12u2", "bookworm-security" // security upgrade
	new.Packages[3].Version, new.Packages[3].Archive = "2026a-0+deb12u1", "bookworm-updates"   // plain upgrade
	new.Packages[0].Version = "7.88.1-10+deb12u1"                                              // downgrade
	new.Packages = append(new.Packages[:2], new.Packages[3:]...)                               // libstdc++6 removed
	new.Packages = append(new.Packages, Deb{Name: "zstd", Version: "1.5.4+dfsg2-5", Arch: "amd64", Archive: "bookworm"})
	new.Kernel = Deb{Name: "linux-image-6.1.0-57-cloud-amd64", Version: "6.1.192-3", Arch: "amd64", Archive: "bookworm-security"}
	new.Binaries[0].Deps = []Module{mod("github.com/hashicorp/raft", "v1.7.4"), mod("golang.org/x/sys", "v0.50.0")}
	new.Binaries[0].SHA256 = sumB
	new.BootLoaders[0].Packages[0].Version = "2.06-13+deb12u3" // the build host's GRUB
	new.BootLoaders[1].Packages[0].Version = "2.12-1~bpo12+2"

	d := Compare(old, new)
	want := &Diff{
		From: "1.0.0", To: "1.0.1",
		Kernel:  &Change{Name: "linux-image-6.1.0-50-cloud-amd64 -> linux-image-6.1.0-57-cloud-amd64", Arch: "amd64", Old: "6.1.176-1", New: "6.1.192-3", Archive: "bookworm-security", Security: true},
		Added:   []Change{{Name: "zstd", Arch: "amd64", New: "1.5.4+dfsg2-5", Archive: "bookworm"}},
		Removed: []Change{{Name: "libstdc++6", Arch: "amd64", Old: "12.2.0-14+deb12u1", Archive: "bookworm"}},
		Upgraded: []Change{
			{Name: "curl", Arch: "amd64", Old: "7.88.1-10+deb12u14", New: "7.88.1-10+deb12u1", Archive: "bookworm", Downgraded: true},
			{Name: "libssl3", Arch: "amd64", Old: "3.0.20-1~deb12u2", New: "3.0.22-1~deb12u2", Archive: "bookworm-security", Security: true},
			{Name: "tzdata", Arch: "all", Old: "2025b-0+deb12u1", New: "2026a-0+deb12u1", Archive: "bookworm-updates"},
		},
		GoModules: []Change{{Name: "github.com/hashicorp/raft", Old: "v1.7.3", New: "v1.7.4"}},
		Binaries:  []Change{{Name: "pithd", Old: sumA[:12], New: sumB[:12]}},
		BootLoaders: []Change{
			{Name: "bios: grub-pc-bin", Arch: "amd64", Old: "2.06-13+deb12u2", New: "2.06-13+deb12u3", Archive: HostArchive},
			{Name: "uefi: grub-efi-amd64-bin", Arch: "amd64", Old: "2.12-1~bpo12+1", New: "2.12-1~bpo12+2", Archive: "bookworm-backports"},
		},
	}
	if !reflect.DeepEqual(d, want) {
		g, _ := json.MarshalIndent(d, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("diff\n got %s\nwant %s", g, w)
	}
	sec := d.Security()
	if len(sec) != 2 || sec[0].Name != want.Kernel.Name || sec[1].Name != "libssl3" {
		t.Errorf("security upgrades %+v", sec)
	}
	if d.Empty() || !Compare(old, sample()).Empty() {
		t.Errorf("Empty: a real diff is empty, or equal inventories differ")
	}
	var sb strings.Builder
	d.Write(&sb)
	for _, line := range []string{
		"1.0.0 -> 1.0.1: 3 upgraded (2 security), 1 added, 1 removed, 2 boot-loader packages changed\n",
		"  libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2 (security: bookworm-security)\n",
		"  curl 7.88.1-10+deb12u14 -> 7.88.1-10+deb12u1 (downgrade)\n",
		"added:\n  zstd 1.5.4+dfsg2-5\n",
		"removed:\n  libstdc++6 12.2.0-14+deb12u1\n",
		"boot loaders:\n  bios: grub-pc-bin 2.06-13+deb12u2 -> 2.06-13+deb12u3\n  uefi: grub-efi-amd64-bin 2.12-1~bpo12+1 -> 2.12-1~bpo12+2\n",
	} {
		if !strings.Contains(sb.String(), line) {
			t.Errorf("printed diff lacks %q:\n%s", line, sb.String())
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"3.0.22-1~deb12u2", "3.0.20-1~deb12u2", 1},
		{"1.0~rc1-1", "1.0-1", -1}, // ~ sorts before everything
		{"1:1.0-1", "2.0-1", 1},    // the epoch wins
		{"6.1.192-3", "6.1.192-3", 0},
		{"7.88.1-10+deb12u1", "7.88.1-10+deb12u14", -1},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestOutdated(t *testing.T) {
	main := config.Archive{URI: "http://deb.debian.org/debian", Suite: "bookworm"}
	upd := config.Archive{URI: "http://deb.debian.org/debian", Suite: "bookworm-updates"}
	sec := config.Archive{URI: "http://deb.debian.org/debian-security", Suite: "bookworm-security"}
	idx := apt.Index{
		"libssl3": {
			{Package: "libssl3", Version: "3.0.20-1~deb12u2", Arch: "amd64", Archive: main},
			{Package: "libssl3", Version: "3.0.22-1~deb12u2", Arch: "amd64", Archive: sec},
		},
		// Newer only in -updates: not a security fix.
		"tzdata": {{Package: "tzdata", Version: "2026a-0+deb12u1", Arch: "all", Archive: upd}},
		// Older in security than installed: nothing to do.
		"curl":                             {{Package: "curl", Version: "7.88.1-10+deb12u1", Arch: "amd64", Archive: sec}},
		"linux-image-6.1.0-57-cloud-amd64": {{Package: "linux-image-6.1.0-57-cloud-amd64", Version: "6.1.192-3", Arch: "amd64", Source: "linux-signed-amd64", Archive: sec}},
		// The BIOS GRUB was made from the build host's package.
		"grub-pc-bin": {{Package: "grub-pc-bin", Version: "2.06-13+deb12u3", Arch: "amd64", Source: "grub2", Archive: sec}},
		// Another flavour is not this kernel's update.
		"linux-image-6.1.0-58-amd64": {{Package: "linux-image-6.1.0-58-amd64", Version: "6.1.200-1", Arch: "amd64", Source: "linux-signed-amd64", Archive: sec}},
	}
	got := Outdated(sample(), idx)
	want := []Update{
		{Name: "grub-pc-bin", Arch: "amd64", Installed: "2.06-13+deb12u2", Available: "2.06-13+deb12u3", Archive: "bookworm-security", Boot: BootBIOS},
		{Name: "libssl3", Arch: "amd64", Installed: "3.0.20-1~deb12u2", Available: "3.0.22-1~deb12u2", Archive: "bookworm-security"},
		{Name: "linux-image-6.1.0-50-cloud-amd64", Arch: "amd64", Installed: "6.1.176-1", Available: "6.1.192-3", Archive: "bookworm-security", Package: "linux-image-6.1.0-57-cloud-amd64"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Outdated\n got %+v\nwant %+v", got, want)
	}
	// An image at the archive's versions is current.
	cur := sample()
	cur.Packages[1].Version = "3.0.22-1~deb12u2"
	cur.BootLoaders[0].Packages[0].Version = "2.06-13+deb12u3"
	cur.Kernel.Name, cur.Kernel.Version, cur.KernelRelease = "linux-image-6.1.0-57-cloud-amd64", "6.1.192-3", "6.1.0-57-cloud-amd64"
	if got := Outdated(cur, idx); len(got) != 0 {
		t.Errorf("a current image is outdated: %+v", got)
	}
}

// TestGoModuleChecksums: every Go module a binary links is an SPDX package
// with its version and its go.sum hash as a SHA256 checksum (hex) and in
// go.sum's form in the comment, and reads back; the modules come from the
// binary's build information, here of a program built from testdata
// (a test binary's own lists no modules).
func TestGoModuleChecksums(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "modprog")
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe, "./testdata/modprog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./testdata/modprog: %v\n%s", err, out)
	}
	b, err := ReadBinary(exe, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Deps) == 0 {
		t.Fatalf("%s links no modules per its build information", exe)
	}
	for _, m := range b.Deps {
		if m.Version == "" || !strings.HasPrefix(m.Sum, "h1:") {
			t.Errorf("module %s: version %q, sum %q: want both from the build information", m.Path, m.Version, m.Sum)
		}
	}
	inv := &Inventory{Name: "pith", Version: "1.0.0", Suite: "bookworm", Binaries: []Binary{b}}
	d := inv.Document(time.Unix(1767225600, 0), "pith-test")
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	byName := map[string]Package{}
	for _, p := range d.Packages {
		byName[p.Name+"@"+p.VersionInfo] = p
	}
	for _, bin := range inv.Binaries {
		for _, m := range bin.Deps {
			p, ok := byName[m.Path+"@"+m.Version]
			if !ok {
				t.Errorf("%s: module %s %s is not in the document", bin.Name, m.Path, m.Version)
				continue
			}
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(m.Sum, "h1:"))
			if want := (Checksum{"SHA256", hex.EncodeToString(raw)}); len(p.Checksums) != 1 || p.Checksums[0] != want {
				t.Errorf("module %s: checksums %+v, want %+v (its %s)", m.Path, p.Checksums, want, m.Sum)
			}
			if !strings.HasSuffix(p.Comment, " "+m.Sum) {
				t.Errorf("module %s: comment %q lacks %s", m.Path, p.Comment, m.Sum)
			}
		}
	}
	if p, ok := byName["stdlib@"+b.GoVersion]; !ok || len(p.Checksums) != 0 {
		t.Errorf("stdlib %s: package %v with checksums %+v, want one without (Go has no go.sum hash for it)", b.GoVersion, ok, p.Checksums)
	}
	got, err := Parse(d)
	if err != nil {
		t.Fatal(err)
	}
	if g := got.Binaries[0]; !reflect.DeepEqual(g.Deps, b.Deps) {
		t.Errorf("modules read back:\n got %+v\nwant %+v", g.Deps, b.Deps)
	}
}

func TestH1Hex(t *testing.T) {
	for _, tt := range []struct {
		sum, hex string
		ok       bool
	}{
		{"h1:NgAacnzqPeGH49Ky19QKLBZEuFRqtTG9cdaucc3Vncs=", "36001a727cea3de187e3d2b2d7d40a2c1644b8546ab531bd71d6ae71cdd59dcb", true},
		{"", "", false},
		{"h2:NgAacnzqPeGH49Ky19QKLBZEuFRqtTG9cdaucc3Vncs=", "", false}, // another hash kind
		{"h1:NgAacnzq", "", false},                                     // not 32 bytes
		{"h1:not base64!", "", false},
	} {
		got, ok := h1Hex(tt.sum)
		if got != tt.hex || ok != tt.ok {
			t.Errorf("h1Hex(%q) = %q, %v; want %q, %v", tt.sum, got, ok, tt.hex, tt.ok)
		}
		if ok && hexH1(got) != tt.sum {
			t.Errorf("hexH1(%q) = %q, want %q", got, hexH1(got), tt.sum)
		}
	}
}
