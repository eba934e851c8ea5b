package sbom

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ReadBinary describes a Go program from its embedded build information
// (what `go version -m` prints): the toolchain, the main module and every
// module linked in. version is Pith's version (the main module of a local
// build says "(devel)").
func ReadBinary(path, version string) (Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return Binary{}, err
	}
	defer f.Close()
	bi, err := buildinfo.Read(f)
	if err != nil {
		return Binary{}, fmt.Errorf("%s has no Go build information (%v): build it with go build (make bin)", path, err)
	}
	h := sha256.New()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Binary{}, err
	}
	if _, err := io.Copy(h, f); err != nil {
		return Binary{}, err
	}
	b := Binary{Name: filepath.Base(path), Version: version, SHA256: hex.EncodeToString(h.Sum(nil)), GoVersion: bi.GoVersion, Main: bi.Main.Path}
	for _, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		b.Deps = append(b.Deps, Module{Path: m.Path, Version: m.Version})
	}
	return b, nil
}
