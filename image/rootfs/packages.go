package rootfs

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/pith-os/pith/image/apt"
)

// installedPackages reads dpkg's status: every installed package with its
// source package.
func installedPackages(status string) ([]Package, error) {
	f, err := os.Open(status)
	if err != nil {
		return nil, fmt.Errorf("read the package database: %w", err)
	}
	defer f.Close()
	return parseInstalled(f)
}

func parseInstalled(r io.Reader) ([]Package, error) {
	var out []Package
	err := apt.ParseStanzas(r, func(f map[string]string) {
		if !strings.HasSuffix(f["Status"], " installed") || f["Package"] == "" {
			return
		}
		p := Package{Name: f["Package"], Version: f["Version"], Arch: f["Architecture"]}
		p.Source, p.SourceVersion = apt.SourceOf(f["Source"], p.Name, p.Version)
		out = append(out, p)
	}, "Package", "Status", "Version", "Architecture", "Source")
	if err != nil {
		return nil, fmt.Errorf("read the package database: %w", err)
	}
	slices.SortFunc(out, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// kernelPackage reads the customize hook's record of the kernel's .deb:
// "name version arch".
func kernelPackage(path string) (Package, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Package{}, fmt.Errorf("rootfs: the cached Debian tree does not say which package its kernel came from (%v): remove the cache's rootfs/ trees and rebuild", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return Package{}, fmt.Errorf("rootfs: %s: want \"name version arch\", got %q", path, strings.TrimSpace(string(b)))
	}
	return Package{Name: f[0], Version: f[1], Arch: f[2]}, nil
}
