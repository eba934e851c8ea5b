package apply

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// under joins an absolute path to the root, refusing paths that climb out
// of it ("/etc/../../x" stays inside after Clean, but be explicit).
func under(root, p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q is not absolute", p)
	}
	full := filepath.Join(root, filepath.Clean(p))
	if root != "/" && full != root && !strings.HasPrefix(full, filepath.Clean(root)+string(os.PathSeparator)) {
		return "", fmt.Errorf("path %q leaves the root", p)
	}
	return full, nil
}

// mkdirAll creates missing directories with mode 0755, owned by root, like
// coreos-cloudinit did for write_files parents.
func mkdirAll(p string) error { return os.MkdirAll(p, 0o755) }

// writeAtomic writes data to p through a temp file in the same directory
// and a rename, so a crash never leaves a half-written file, then sets
// the exact mode (umask-free) and owner.
func writeAtomic(p string, data []byte, mode os.FileMode, uid, gid int) error {
	if err := mkdirAll(filepath.Dir(p)); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".pith-")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// chown before chmod: chown clears setuid/setgid bits.
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(name, uid, gid); err != nil {
			return err
		}
	}
	if err := os.Chmod(name, mode); err != nil {
		return err
	}
	return os.Rename(name, p)
}

// fileMode turns Unix permission bits (e.g. 04755) into Go's FileMode,
// which keeps setuid, setgid and sticky in bits of its own.
func fileMode(unix uint32) os.FileMode {
	m := os.FileMode(unix & 0o777)
	if unix&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if unix&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if unix&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}
