package sbom

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"pault.ag/go/debian/version"
)

// Change is one package that differs between two inventories.
type Change struct {
	Name       string `json:"name"`
	Arch       string `json:"arch,omitempty"`
	Old        string `json:"old,omitempty"` // version before ("" when added)
	New        string `json:"new,omitempty"` // version after ("" when removed)
	Archive    string `json:"archive,omitempty"`
	Security   bool   `json:"security,omitempty"` // the new version came from a -security archive
	Downgraded bool   `json:"downgraded,omitempty"`
}

func (c Change) String() string {
	s := c.Name
	switch {
	case c.Old == "":
		s += " " + c.New
	case c.New == "":
		s += " " + c.Old
	default:
		s += " " + c.Old + " -> " + c.New
	}
	if c.Security {
		s += " (security: " + c.Archive + ")"
	}
	return s
}

// Diff is what changed between two images: Debian packages and Go modules.
type Diff struct {
	From     string   `json:"from"` // versions of the images
	To       string   `json:"to"`
	Kernel   *Change  `json:"kernel,omitempty"`
	Added    []Change `json:"added"`
	Removed  []Change `json:"removed"`
	Upgraded []Change `json:"upgraded"` // includes downgrades, marked
	// GoModules are the changes of the modules linked into Pith's binaries.
	GoModules []Change `json:"go_modules,omitempty"`
	// Binaries are Pith's programs whose bytes changed (old and new are
	// the first 12 hex digits of their SHA-256).
	Binaries []Change `json:"binaries,omitempty"`
	// BootLoaders are the changes of the packages each boot path's GRUB
	// was made from, named "<boot>: <package>" (bios, uefi).
	BootLoaders []Change `json:"boot_loaders,omitempty"`
}

// Empty reports whether nothing changed.
func (d *Diff) Empty() bool {
	return d.Kernel == nil && len(d.Added)+len(d.Removed)+len(d.Upgraded)+len(d.GoModules)+len(d.Binaries)+len(d.BootLoaders) == 0
}

// Security returns the upgrades (kernel and boot loaders included) whose
// new version came from a -security archive.
func (d *Diff) Security() []Change {
	var out []Change
	if d.Kernel != nil && d.Kernel.Security {
		out = append(out, *d.Kernel)
	}
	for _, c := range slices.Concat(d.Upgraded, d.BootLoaders) {
		if c.Security && !c.Downgraded {
			out = append(out, c)
		}
	}
	return out
}

// Compare computes what changed from old to new. Packages are matched by
// name and architecture; the kernel by its role (its package name carries
// the ABI, which changes with most kernel updates).
func Compare(old, new *Inventory) *Diff {
	d := &Diff{From: old.Version, To: new.Version}
	d.Added, d.Removed, d.Upgraded = comparePackages(old.Packages, new.Packages)
	if old.Kernel.Name != new.Kernel.Name || old.Kernel.Version != new.Kernel.Version {
		k := upgrade(new.Kernel.Name, new.Kernel.Arch, old.Kernel.Version, new.Kernel)
		if old.Kernel.Name != new.Kernel.Name {
			k.Name = old.Kernel.Name + " -> " + new.Kernel.Name
		}
		d.Kernel = &k
	}
	d.GoModules = compareModules(modules(old), modules(new))
	d.Binaries = compareModules(binaries(old), binaries(new))
	added, removed, upgraded := comparePackages(bootDebs(old), bootDebs(new))
	d.BootLoaders = slices.Concat(upgraded, added, removed)
	return d
}

// comparePackages matches packages by name and architecture.
func comparePackages(old, new []Deb) (added, removed, upgraded []Change) {
	added, removed, upgraded = []Change{}, []Change{}, []Change{}
	key := func(p Deb) string { return p.Name + ":" + p.Arch }
	before := map[string]Deb{}
	for _, p := range old {
		before[key(p)] = p
	}
	for _, p := range new {
		o, ok := before[key(p)]
		delete(before, key(p))
		switch {
		case !ok:
			added = append(added, Change{Name: p.Name, Arch: p.Arch, New: p.Version, Archive: p.Archive})
		case o.Version != p.Version:
			upgraded = append(upgraded, upgrade(p.Name, p.Arch, o.Version, p))
		}
	}
	for _, p := range old {
		if _, gone := before[key(p)]; gone {
			removed = append(removed, Change{Name: p.Name, Arch: p.Arch, Old: p.Version, Archive: p.Archive})
		}
	}
	return added, removed, upgraded
}

// bootDebs are the boot loaders' packages, each named "<boot>: <name>":
// the same package (grub-common) can be in both paths, at two versions.
func bootDebs(inv *Inventory) []Deb {
	var out []Deb
	for _, b := range inv.BootLoaders {
		for _, p := range b.Packages {
			p.Name = b.Boot + ": " + p.Name
			out = append(out, p)
		}
	}
	return out
}

// binaries maps Pith's programs to their short SHA-256.
func binaries(inv *Inventory) map[string]string {
	out := map[string]string{}
	for _, b := range inv.Binaries {
		out[b.Name] = b.SHA256[:min(12, len(b.SHA256))]
	}
	return out
}

func upgrade(name, arch, oldVersion string, p Deb) Change {
	c := Change{Name: name, Arch: arch, Old: oldVersion, New: p.Version, Archive: p.Archive}
	c.Downgraded = CompareVersions(p.Version, oldVersion) < 0
	c.Security = p.Security() && !c.Downgraded
	return c
}

// CompareVersions orders Debian versions (-1, 0, 1) (epoch, upstream, revision, with
// ~ before anything); unparsable versions compare as text.
func CompareVersions(a, b string) int {
	va, errA := version.Parse(a)
	vb, errB := version.Parse(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	switch c := version.Compare(va, vb); {
	case c < 0:
		return -1
	case c > 0:
		return 1
	}
	return 0
}

// modules is the set of Go modules (path -> version) over all binaries.
func modules(inv *Inventory) map[string]string {
	out := map[string]string{}
	for _, b := range inv.Binaries {
		if b.GoVersion != "" {
			out["stdlib"] = b.GoVersion
		}
		for _, m := range b.Deps {
			out[m.Path] = m.Version
		}
	}
	return out
}

func compareModules(old, new map[string]string) []Change {
	var out []Change
	for p, v := range new {
		if o, ok := old[p]; !ok || o != v {
			out = append(out, Change{Name: p, Old: o, New: v})
		}
	}
	for p, o := range old {
		if _, ok := new[p]; !ok {
			out = append(out, Change{Name: p, Old: o})
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Write prints the diff for people: one section per kind, one package a
// line, security upgrades marked.
func (d *Diff) Write(w io.Writer) {
	fmt.Fprintf(w, "%s -> %s: %d upgraded (%d security), %d added, %d removed", d.From, d.To, len(d.Upgraded), len(d.Security()), len(d.Added), len(d.Removed))
	if n := len(d.BootLoaders); n > 0 {
		// Security counts theirs too.
		fmt.Fprintf(w, ", %d boot-loader packages changed", n)
	}
	fmt.Fprintln(w)
	if d.Kernel != nil {
		fmt.Fprintf(w, "kernel:\n  %s\n", d.Kernel)
	}
	for _, s := range []struct {
		title string
		list  []Change
	}{{"upgraded", d.Upgraded}, {"added", d.Added}, {"removed", d.Removed}, {"boot loaders", d.BootLoaders}, {"go modules", d.GoModules}, {"pith binaries (sha256)", d.Binaries}} {
		if len(s.list) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\n", s.title)
		for _, c := range s.list {
			line := c.String()
			if c.Downgraded {
				line += " (downgrade)"
			}
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
}
