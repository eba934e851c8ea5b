package sbom

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ReadBinary describes a Go program from its embedded build information
// (what `go version -m` prints): the toolchain, the main module and every
// module linked in, with its version and go.sum hash. version is Pith's
// version (the main module of a local build says "(devel)").
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
		b.Deps = append(b.Deps, Module{Path: m.Path, Version: m.Version, Sum: m.Sum})
	}
	return b, nil
}

// h1Hex turns a go.sum hash ("h1:" and the base64 SHA-256 of the module's
// file list, Go's dirhash) into the hex digest an SPDX SHA256 checksum
// holds; ok is false for anything else.
func h1Hex(sum string) (string, bool) {
	b64, ok := strings.CutPrefix(sum, "h1:")
	if !ok {
		return "", false
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != sha256.Size {
		return "", false
	}
	return hex.EncodeToString(b), true
}

// hexH1 is h1Hex's inverse ("" for a digest that is not SHA-256 hex).
func hexH1(digest string) string {
	b, err := hex.DecodeString(digest)
	if err != nil || len(b) != sha256.Size {
		return ""
	}
	return "h1:" + base64.StdEncoding.EncodeToString(b)
}
