package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/pith-os/pith/image/layout"
)

// PrepareOut checks that outDir can receive the artifacts (creating it if
// needed) and returns a fresh work directory inside it: temporaries live on
// the same filesystem as the results, so publishing is a rename.
func PrepareOut(outDir string) (workDir string, err error) {
	st, err := os.Stat(outDir)
	switch {
	case err == nil && !st.IsDir():
		return "", fmt.Errorf("output path %s is a file, not a directory: remove it or choose another --out", outDir)
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return "", fmt.Errorf("cannot create output directory %s: %v: choose another --out", outDir, errors.Unwrap(err))
		}
	case err != nil:
		return "", fmt.Errorf("output directory %s: %v: choose another --out", outDir, err)
	}
	if err := checkFree(outDir, MinFree); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(outDir, ".pith-build-")
	if err != nil {
		return "", fmt.Errorf("output directory %s is not writable (%v): choose another --out", outDir, errors.Unwrap(err))
	}
	return work, nil
}

// MinFree is the free space a build needs in its output directory: the
// Debian tree, the USR squashfs, the partition images, pith.img's allocated
// blocks and pith.qcow2 (about 1.3 GiB for the default image), with margin.
const MinFree = 2 << 30

// checkFree fails early, with the fix, when dir's filesystem lacks need bytes.
func checkFree(dir string, need int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil // unknown: the writes themselves will tell
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return fmt.Errorf("not enough space in %s: %s free, a build needs about %s: free space or choose another --out", dir, layout.Human(free), layout.Human(need))
	}
	return nil
}

// Publish renames the finished artifacts (final name -> temporary path)
// into outDir, the manifest last so a manifest always describes the files
// beside it. Nothing is renamed unless every temporary exists.
func Publish(outDir string, artifacts map[string]string, manifestName string) ([]ArtifactInfo, error) {
	names := make([]string, 0, len(artifacts))
	for name, path := range artifacts {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("artifact %s missing before publishing: %w", name, err)
		}
		if name != manifestName {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if _, ok := artifacts[manifestName]; ok {
		// A stale manifest must not describe new files while they move in.
		os.Remove(filepath.Join(outDir, manifestName))
		names = append(names, manifestName)
	}
	var out []ArtifactInfo
	for _, name := range names {
		dst := filepath.Join(outDir, name)
		if err := os.Rename(artifacts[name], dst); err != nil {
			return nil, err
		}
		st, err := os.Stat(dst)
		if err != nil {
			return nil, err
		}
		out = append(out, ArtifactInfo{Name: name, Path: dst, Size: st.Size(), Allocated: allocated(dst)})
	}
	return out, nil
}
