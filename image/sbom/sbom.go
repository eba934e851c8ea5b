// Package sbom describes what a Pith image contains as an SPDX 2.3 document
// (pith.spdx.json beside pith.img, /usr/share/pith/pith.spdx.json on a
// node): every Debian package with its version, architecture, source
// package, the .deb's SHA-256 and the archive it came from, the kernel, and
// Pith's own Go binaries with the modules linked into them. It also compares
// two inventories (Diff) and an inventory with the archives (Outdated).
package sbom

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FileName is the SBOM's name beside pith.img and in /usr/share/pith.
const FileName = "pith.spdx.json"

// ImagePath is where the image carries its SBOM, relative to /usr.
const ImagePath = "share/pith/" + FileName

// Inventory is what an image contains, the content of the SBOM.
type Inventory struct {
	Name     string // "pith"
	Version  string // the image's version
	Suite    string // the Debian release (purl distro)
	Packages []Deb  // Debian packages from dpkg's database, by name
	Kernel   Deb    // the package the kernel was extracted from
	// KernelRelease is the kernel's uname -r (6.1.0-57-cloud-amd64).
	KernelRelease string
	Binaries      []Binary // Pith's own programs
	// BootLoaders are the GRUBs of the boot paths (BIOS, then UEFI).
	BootLoaders []BootLoader
	// Media is what the document describes, in its primary package's
	// comment: "" for a disk image (MediaDisk), or MediaLive.
	Media string
}

// What an SBOM describes: a disk image (pith build) or the live ISO and
// PXE files made from one (pith live), which boot other GRUBs.
const (
	MediaDisk = "disk image"
	MediaLive = "live media (ISO, PXE files)"
)

// builtFrom joins the media and the Debian release in the primary
// package's comment ("Pith disk image built from Debian bookworm").
const builtFrom = " built from Debian "

// Deb is one Debian binary package.
type Deb struct {
	Name, Version, Arch   string
	Source, SourceVersion string
	SHA256                string // of the .deb, from the archive's index
	URL                   string // where the .deb is
	Archive               string // suite it came from: bookworm, bookworm-security...
}

// Security reports whether the version came from a -security archive.
func (d Deb) Security() bool { return strings.HasSuffix(d.Archive, "-security") }

// Binary is one of Pith's Go programs.
type Binary struct {
	Name      string
	Version   string // Pith's version
	SHA256    string // of the file
	GoVersion string // toolchain, e.g. go1.26.8
	Main      string // main module path
	Deps      []Module
}

// Module is a Go module linked into a binary.
type Module struct {
	Path, Version string
	Sum           string // go.sum's hash, "h1:..." ("" for the standard library)
}

// Package and relationship identifiers of the fixed elements.
const (
	imageID  = "SPDXRef-image"
	kernelID = "SPDXRef-kernel"
)

// comment prefixes carrying what SPDX has no field for, read back by Parse.
const (
	archivePrefix = "Debian archive: "
	kernelPrefix  = "Linux kernel "
	sourcePrefix  = "built package from: "
	goSumPrefix   = "Go module; SHA256 checksum = go.sum hash (dirhash of its files) "
)

// Document renders the inventory as SPDX; created is the build's timestamp
// (SOURCE_DATE_EPOCH: equal builds give equal documents) and tool names the
// program writing it.
func (inv *Inventory) Document(created time.Time, tool string) *Document {
	d := &Document{
		SPDXVersion: Version, DataLicense: DataLicense, SPDXID: DocumentID,
		Name:         inv.Name + "-" + inv.Version,
		CreationInfo: CreationInfo{Created: created.UTC().Format(TimeFormat), Creators: []string{"Tool: " + tool, "Organization: Pith"}},
	}
	d.Packages = append(d.Packages, Package{
		SPDXID: imageID, Name: inv.Name, VersionInfo: inv.Version, Supplier: "Organization: Pith",
		DownloadLocation: NoAssertion, PrimaryPackagePurpose: "OPERATING-SYSTEM",
		Comment: "Pith " + cmp.Or(inv.Media, MediaDisk) + builtFrom + inv.Suite,
	})
	d.Relationships = append(d.Relationships, Relationship{DocumentID, Describes, imageID})
	used := map[string]bool{imageID: true, kernelID: true}
	uniqueID := func(parts ...string) string {
		id := SPDXIDFor(parts...)
		for n := 2; used[id]; n++ {
			id = SPDXIDFor(append(parts, fmt.Sprint(n))...)
		}
		used[id] = true
		return id
	}
	if inv.Kernel.Name != "" {
		k := debPackage(kernelID, inv.Kernel, inv.Suite)
		k.PrimaryPackagePurpose = "OPERATING-SYSTEM"
		k.Comment = kernelPrefix + inv.KernelRelease + "; " + k.Comment
		d.Packages = append(d.Packages, k)
		d.Relationships = append(d.Relationships, Relationship{imageID, Contains, kernelID})
	}
	for _, p := range inv.Packages {
		id := uniqueID("deb", p.Name, p.Arch)
		d.Packages = append(d.Packages, debPackage(id, p, inv.Suite))
		d.Relationships = append(d.Relationships, Relationship{imageID, Contains, id})
	}
	for _, p := range inv.bootPackages(uniqueID) {
		d.Packages = append(d.Packages, p)
		d.Relationships = append(d.Relationships, Relationship{imageID, Contains, p.SPDXID})
	}
	modIDs := map[Module]string{}
	for _, b := range inv.Binaries {
		id := uniqueID("bin", b.Name)
		d.Packages = append(d.Packages, Package{
			SPDXID: id, Name: b.Name, VersionInfo: b.Version, Supplier: "Organization: Pith",
			DownloadLocation: NoAssertion, PrimaryPackagePurpose: "APPLICATION",
			Checksums:    []Checksum{{"SHA256", b.SHA256}},
			ExternalRefs: []ExternalRef{purl(golangPURL(b.Main, b.Version))},
			Comment:      "Go program " + b.Main + " built with " + b.GoVersion,
		})
		d.Relationships = append(d.Relationships, Relationship{imageID, Contains, id})
		for _, m := range append([]Module{{Path: "stdlib", Version: b.GoVersion}}, b.Deps...) {
			mid, ok := modIDs[m]
			if !ok {
				mid = uniqueID("go", m.Path, m.Version)
				modIDs[m] = mid
				mp := Package{
					SPDXID: mid, Name: m.Path, VersionInfo: m.Version, DownloadLocation: NoAssertion,
					PrimaryPackagePurpose: "LIBRARY", ExternalRefs: []ExternalRef{purl(golangPURL(m.Path, m.Version))},
				}
				// The module's go.sum hash, as syft records it too: SPDX
				// checksums are hex, the comment keeps go.sum's form.
				if digest, ok := h1Hex(m.Sum); ok {
					mp.Checksums = []Checksum{{"SHA256", digest}}
					mp.Comment = goSumPrefix + m.Sum
				}
				d.Packages = append(d.Packages, mp)
			}
			d.Relationships = append(d.Relationships, Relationship{id, StaticLink, mid})
		}
	}
	// The namespace is unique per content, and stable for equal content.
	h := sha256.New()
	for _, p := range d.Packages {
		fmt.Fprintf(h, "%s %s %s\n", p.SPDXID, p.VersionInfo, checksumOf(p))
	}
	d.DocumentNamespace = "https://github.com/pith-os/pith/spdx/" + d.Name + "-" + hex.EncodeToString(h.Sum(nil))[:16]
	return d
}

// debPackage renders p; distro is the purl's (the Debian release), if known.
func debPackage(id string, p Deb, distro string) Package {
	q := url.Values{"arch": {p.Arch}}
	if distro != "" {
		q.Set("distro", distro)
	}
	if p.Source != "" && p.Source != p.Name {
		q.Set("upstream", p.Source)
	}
	dl := p.URL
	if dl == "" {
		dl = NoAssertion
	}
	pk := Package{
		SPDXID: id, Name: p.Name, VersionInfo: p.Version, Supplier: "Organization: Debian",
		DownloadLocation: dl, SourceInfo: sourcePrefix + p.Source + " " + p.SourceVersion,
		ExternalRefs: []ExternalRef{purl("pkg:deb/debian/" + url.PathEscape(p.Name) + "@" + url.PathEscape(p.Version) + "?" + q.Encode())},
		Comment:      archivePrefix + p.Archive,
	}
	if p.SHA256 != "" {
		pk.Checksums = []Checksum{{"SHA256", p.SHA256}}
	}
	return pk
}

func purl(locator string) ExternalRef {
	return ExternalRef{Category: "PACKAGE-MANAGER", Type: "purl", Locator: locator}
}

func golangPURL(path, version string) string {
	return "pkg:golang/" + path + "@" + url.PathEscape(version)
}

func checksumOf(p Package) string {
	for _, c := range p.Checksums {
		if c.Algorithm == "SHA256" {
			return c.Value
		}
	}
	return ""
}

// Parse reads an inventory back from a document Pith wrote.
func Parse(d *Document) (*Inventory, error) {
	inv := &Inventory{}
	byID := map[string]Package{}
	for _, p := range d.Packages {
		byID[p.SPDXID] = p
	}
	img, ok := byID[imageID]
	if !ok {
		return nil, fmt.Errorf("%s: no %s package: not an SBOM of a Pith image", d.Name, imageID)
	}
	inv.Name, inv.Version = img.Name, img.VersionInfo
	if media, suite, ok := strings.Cut(img.Comment, builtFrom); ok {
		inv.Suite = suite
		if media = strings.TrimPrefix(media, "Pith "); media != MediaDisk {
			inv.Media = media
		}
	}
	links := map[string][]string{}
	for _, r := range d.Relationships {
		if r.Type == StaticLink {
			links[r.Element] = append(links[r.Element], r.Related)
		}
	}
	for _, r := range d.Relationships {
		if r.Element != imageID || r.Type != Contains {
			continue
		}
		p := byID[r.Related]
		if inv.parseBoot(p) {
			continue
		}
		switch {
		case r.Related == kernelID:
			inv.Kernel = debOf(p)
			rel, _, _ := strings.Cut(strings.TrimPrefix(p.Comment, kernelPrefix), ";")
			inv.KernelRelease = rel
		case p.Supplier == "Organization: Debian":
			inv.Packages = append(inv.Packages, debOf(p))
		case p.PrimaryPackagePurpose == "APPLICATION":
			b := Binary{Name: p.Name, Version: p.VersionInfo, SHA256: checksumOf(p)}
			b.Main, _, _ = strings.Cut(strings.TrimPrefix(p.Comment, "Go program "), " ")
			for _, id := range links[p.SPDXID] {
				m := byID[id]
				if m.Name == "stdlib" {
					b.GoVersion = m.VersionInfo
					continue
				}
				b.Deps = append(b.Deps, Module{Path: m.Name, Version: m.VersionInfo, Sum: hexH1(checksumOf(m))})
			}
			inv.Binaries = append(inv.Binaries, b)
		}
	}
	slices.SortFunc(inv.Packages, func(a, b Deb) int { return strings.Compare(a.Name+" "+a.Arch, b.Name+" "+b.Arch) })
	return inv, nil
}

func debOf(p Package) Deb {
	d := Deb{Name: p.Name, Version: p.VersionInfo, SHA256: checksumOf(p)}
	if p.DownloadLocation != NoAssertion {
		d.URL = p.DownloadLocation
	}
	for _, part := range strings.Split(p.Comment, "; ") {
		if a, ok := strings.CutPrefix(part, archivePrefix); ok {
			d.Archive = a
		}
	}
	src := strings.Fields(strings.TrimPrefix(p.SourceInfo, sourcePrefix))
	if len(src) == 2 {
		d.Source, d.SourceVersion = src[0], src[1]
	}
	for _, r := range p.ExternalRefs {
		if r.Type != "purl" {
			continue
		}
		if _, q, ok := strings.Cut(r.Locator, "?"); ok {
			if v, err := url.ParseQuery(q); err == nil {
				d.Arch = v.Get("arch")
			}
		}
	}
	return d
}

// Read loads an SBOM file: pith.spdx.json itself, or an image directory
// (or release directory) holding one.
func Read(path string) (*Inventory, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%s does not exist: name a pith.spdx.json, or an image or release directory holding one (pith build writes it beside pith.img)", path)
		}
		return nil, err
	}
	d, err := Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return Parse(d)
}
