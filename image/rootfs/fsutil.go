package rootfs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// tarFlags keep what the image needs: numeric owners, ACLs and every xattr
// (file capabilities such as ping's cap_net_raw live in security.capability).
var tarFlags = []string{"--numeric-owner", "--acls", "--xattrs", "--xattrs-include=*"}

// saveTar archives dir into dst (zstd), through a temporary file renamed at
// the end, so the cache never holds a partial tree.
func saveTar(ctx context.Context, dir, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create cache dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst)+"-*")
	if err != nil {
		return fmt.Errorf("cache the Debian tree: %w", err)
	}
	tmp.Close()
	args := append([]string{"--create", "--file", tmp.Name(), "--use-compress-program", "zstd -T0 -3 -q", "--sort=name", "--directory", dir}, tarFlags...)
	args = append(args, ".")
	if out, err := exec.CommandContext(ctx, "tar", args...).CombinedOutput(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cache the Debian tree: tar: %v: %s (free space in the cache dir?)", err, lastLine(out))
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// untar extracts a tarball made by saveTar into dir.
func untar(ctx context.Context, src, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := append([]string{"--extract", "--file", src, "--use-compress-program", "zstd -d -q", "--same-permissions", "--same-owner", "--directory", dir}, tarFlags...)
	if out, err := exec.CommandContext(ctx, "tar", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("extract cached tree %s: %v: %s (delete it to rebuild)", src, err, lastLine(out))
	}
	return nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// pruneTarballs keeps the newest keep tarballs in dir besides current.
func pruneTarballs(dir, current string, keep int) {
	m, _ := filepath.Glob(filepath.Join(dir, "debian-*.tar.zst"))
	type ent struct {
		path string
		mod  int64
	}
	var es []ent
	for _, p := range m {
		if p == current {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			es = append(es, ent{p, fi.ModTime().UnixNano()})
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].mod > es[j].mod })
	for i := keep; i < len(es); i++ {
		os.Remove(es[i].path)
	}
}

// safeRemoveAll removes dir after unmounting anything still mounted below it
// (a chroot's /proc, /sys or /dev bind mount left by an interrupted
// mmdebstrap): RemoveAll must never walk into the host's /dev.
func safeRemoveAll(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for range 3 {
		mounts, err := mountsBelow(abs)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return os.RemoveAll(abs)
		}
		for _, m := range mounts {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	return fmt.Errorf("cannot remove %s: filesystems are still mounted below it; unmount them (findmnt -R %s)", abs, abs)
}

// mountsBelow lists mount points under dir, deepest first.
func mountsBelow(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, sc.Err()
}

// unescapeMount decodes mountinfo's octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mkdirAll is os.MkdirAll with directories made 0755 whatever the umask:
// they end up in the image.
func mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	return os.Chmod(dir, 0o755)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := mkdirAll(filepath.Dir(path)); err != nil {
		return err
	}
	if err := os.RemoveAll(path); err != nil { // may be a symlink
		return err
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chown(dst, 0, 0); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// clampTimes sets every mtime (and atime) under root to at most epoch, in
// whole seconds, children before their directory. It returns the bytes of
// regular files under sizeDir.
func clampTimes(root string, epoch int64, sizeDir string) (int64, error) {
	var size int64
	var dirs []string
	clamp := func(p string, st *unix.Stat_t) error {
		sec := st.Mtim.Sec
		if sec > epoch {
			sec = epoch
		}
		if sec == st.Mtim.Sec && st.Mtim.Nsec == 0 && st.Atim.Sec == sec && st.Atim.Nsec == 0 {
			return nil
		}
		ts := []unix.Timespec{{Sec: sec}, {Sec: sec}}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasPrefix(p, sizeDir+"/") {
			size += st.Size
		}
		return clamp(p, &st)
	})
	if err != nil {
		return 0, err
	}
	for i := len(dirs) - 1; i >= 0; i-- { // deepest last-visited first
		var st unix.Stat_t
		if err := unix.Lstat(dirs[i], &st); err != nil {
			return 0, err
		}
		if err := clamp(dirs[i], &st); err != nil {
			return 0, err
		}
	}
	return size, nil
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
