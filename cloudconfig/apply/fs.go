package apply

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/node/crashpoint"
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

// writeAtomic writes data to p with the exact mode (umask-free) and owner
// through atomicfile, so a cut never leaves a half-written file and a
// file reported written survives one.
func writeAtomic(p string, data []byte, mode os.FileMode, uid, gid int) error {
	if err := mkdirAll(filepath.Dir(p)); err != nil {
		return err
	}
	f, err := atomicfile.Create(p, mode)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	return f.Commit()
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

// sameFile reports whether p already is a regular file with exactly data,
// mode and (when uid/gid >= 0) owner: then it is left alone, so applying
// the same user-data again changes nothing, not even mtimes.
func sameFile(p string, data []byte, mode os.FileMode, uid, gid int) bool {
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() != int64(len(data)) {
		return false
	}
	const bits = os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky
	if st.Mode()&bits != mode&bits {
		return false
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if (uid >= 0 && int(sys.Uid) != uid) || (gid >= 0 && int(sys.Gid) != gid) {
			return false
		}
	}
	old, err := os.ReadFile(p)
	return err == nil && bytes.Equal(old, data)
}

// write writes p (a path under Root) unless it already holds data with
// that mode and owner, and records the change. It reports whether the
// file changed.
func (a *Applier) write(p string, data []byte, mode os.FileMode, uid, gid int) (bool, error) {
	if sameFile(p, data, mode, uid, gid) {
		return false, nil
	}
	if err := writeAtomic(p, data, mode, uid, gid); err != nil {
		return false, err
	}
	// A cut in the middle of an apply: the next boot applies it again.
	crashpoint.Reach("apply-file-written")
	a.changed("wrote %s", a.shown(p))
	return true, nil
}

// shown is p as seen on the node (without the root prefix).
func (a *Applier) shown(p string) string {
	if a.Root == "" || a.Root == "/" {
		return p
	}
	rel, err := filepath.Rel(a.Root, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return p
	}
	return "/" + rel
}

// changed records one change to the system (pithctl userdata apply lists
// them).
func (a *Applier) changed(format string, args ...any) {
	a.mu.Lock()
	a.changes = append(a.changes, fmt.Sprintf(format, args...))
	a.mu.Unlock()
}

// TakeChanges returns the changes recorded since the last call, in order.
func (a *Applier) TakeChanges() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.changes
	a.changes = nil
	return c
}
