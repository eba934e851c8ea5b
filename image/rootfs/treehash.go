package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// TreeHash is a digest of everything about the tree at dir that a
// filesystem image stores: each entry's relative path, type, mode (with
// setuid/setgid/sticky), owner, mtime (seconds), size, content hash,
// symlink target, device number, extended attributes, and which entries are
// hard links of one another. Two trees with the same TreeHash give the
// same USR image.
func TreeHash(dir string) (string, error) {
	type entry struct {
		rel  string
		line string
		file string // regular file to hash, if any
		sum  string
	}
	var entries []*entry
	inodes := map[[2]uint64]string{} // (dev, ino) -> first path seen
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := &entry{rel: rel}
		var b strings.Builder
		fmt.Fprintf(&b, "%q type=%o mode=%o uid=%d gid=%d mtime=%d", rel, st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			fmt.Fprintf(&b, " size=%d", st.Size)
			if st.Nlink > 1 {
				key := [2]uint64{st.Dev, st.Ino}
				if first, ok := inodes[key]; ok {
					fmt.Fprintf(&b, " link=%q", first)
				} else {
					inodes[key] = rel
				}
			}
			e.file = p
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " target=%q", target)
		case unix.S_IFCHR, unix.S_IFBLK:
			fmt.Fprintf(&b, " rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		xa, err := xattrs(p)
		if err != nil {
			return err
		}
		b.WriteString(xa)
		e.line = b.String()
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return "", err
	}

	// Content hashes in parallel: most of the time goes here.
	work := make(chan *entry)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				sum, err := fileSHA256(e.file)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				e.sum = sum
			}
		}()
	}
	for _, e := range entries {
		if e.file != "" {
			work <- e
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return "", err
	default:
	}

	h := sha256.New()
	for _, e := range entries {
		io.WriteString(h, e.line)
		if e.file != "" {
			io.WriteString(h, " sha256="+e.sum)
		}
		io.WriteString(h, "\n")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// xattrs renders a path's extended attributes, sorted by name.
func xattrs(p string) (string, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		if err == unix.ENOTSUP {
			return "", nil
		}
		return "", fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	if size == 0 {
		return "", nil
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "", fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		vsize, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return "", fmt.Errorf("read xattr %s of %s: %w", name, p, err)
		}
		val := make([]byte, vsize)
		if vsize > 0 {
			if vsize, err = unix.Lgetxattr(p, name, val); err != nil {
				return "", fmt.Errorf("read xattr %s of %s: %w", name, p, err)
			}
		}
		fmt.Fprintf(&b, " xattr:%s=%x", name, val[:vsize])
	}
	return b.String(), nil
}
