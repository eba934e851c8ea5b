package box

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Catalog is Vagrant's box metadata JSON (what `vagrant box add URL`
// reads): a name and its versions, each with per-provider downloads.
type Catalog struct {
	Name        string           `json:"name"`
	Description string           `json:"description,omitempty"`
	Versions    []CatalogVersion `json:"versions"`
}

// CatalogVersion is one box version.
type CatalogVersion struct {
	Version   string            `json:"version"`
	Providers []CatalogProvider `json:"providers"`
}

// CatalogProvider is one provider's download of a version.
type CatalogProvider struct {
	Name         string `json:"name"`
	URL          string `json:"url"`
	ChecksumType string `json:"checksum_type"`
	Checksum     string `json:"checksum"`
}

// ReadCatalog reads a catalog, or returns an empty one if path does not
// exist, so successive `pith box --version` runs add versions to it.
func ReadCatalog(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Catalog{Description: "Pith, a container OS (libvirt provider)"}, nil
	}
	if err != nil {
		return nil, err
	}
	var c Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("catalog %s is not box metadata JSON (%v): remove it or pass another --catalog", path, err)
	}
	return &c, nil
}

// Add records p for version v, replacing the same provider of the same
// version, and keeps versions sorted oldest first.
func (c *Catalog) Add(v string, p CatalogProvider) {
	i := slices.IndexFunc(c.Versions, func(x CatalogVersion) bool { return x.Version == v })
	if i < 0 {
		c.Versions = append(c.Versions, CatalogVersion{Version: v})
		i = len(c.Versions) - 1
	}
	ver := &c.Versions[i]
	j := slices.IndexFunc(ver.Providers, func(x CatalogProvider) bool { return x.Name == p.Name })
	if j < 0 {
		ver.Providers = append(ver.Providers, p)
	} else {
		ver.Providers[j] = p
	}
	slices.SortStableFunc(c.Versions, func(a, b CatalogVersion) int { return compareVersions(a.Version, b.Version) })
}

// Encode renders the catalog as indented JSON with a final newline.
func (c *Catalog) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// compareVersions orders dotted numeric versions numerically (0.10.0 after
// 0.9.0), falling back to string order for anything else.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		var ex, ey error = nil, nil
		if i < len(pa) {
			x, ex = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, ey = strconv.Atoi(pb[i])
		}
		if ex != nil || ey != nil {
			return strings.Compare(a, b)
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
