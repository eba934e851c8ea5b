package rootfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/image/config"
)

// listsMaxAge bounds how old cached apt lists may be to reject a package
// name without asking the mirror: a suite seldom gains packages, but an old
// list should not overrule the mirror.
const listsMaxAge = 7 * 24 * time.Hour

// preflightEnabled lets tests exercise mmdebstrap's own error path.
var preflightEnabled = true

// preflight checks every package name against the cached apt lists of the
// mirror and suite, so a typo fails in a second instead of after an
// mmdebstrap run. Without fresh lists it says nothing (mmdebstrap decides).
func preflight(c config.Config, lists string, now time.Time) error {
	if !preflightEnabled {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(lists, "*_Packages"))
	if len(files) == 0 {
		return nil
	}
	// The customize hook touches .fetched after apt-get update succeeded.
	fi, err := os.Stat(filepath.Join(lists, ".fetched"))
	if err != nil || now.Sub(fi.ModTime()) > listsMaxAge {
		return nil
	}
	known := map[string]bool{}
	for _, f := range files {
		if err := packageNames(f, known); err != nil {
			return nil // unreadable cache: let apt judge
		}
	}
	for _, p := range append(packageList(c), c.KernelPackage) {
		if !known[p] {
			return explainFailure([]string{"E: Unable to locate package " + p}, c)
		}
	}
	return nil
}

// packageNames adds the names a Packages file offers (real and Provides).
func packageNames(path string, into map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	pkgPrefix, provPrefix := []byte("Package: "), []byte("Provides: ")
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, pkgPrefix):
			into[string(bytes.TrimSpace(line[len(pkgPrefix):]))] = true
		case bytes.HasPrefix(line, provPrefix):
			for _, p := range strings.Split(string(line[len(provPrefix):]), ",") {
				if name, _, _ := strings.Cut(strings.TrimSpace(p), " "); name != "" {
					into[name] = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
