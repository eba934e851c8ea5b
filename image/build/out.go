package build

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
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
	work, err := os.MkdirTemp(outDir, ".pith-build-")
	if err != nil {
		return "", fmt.Errorf("output directory %s is not writable (%v): choose another --out", outDir, errors.Unwrap(err))
	}
	return work, nil
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
