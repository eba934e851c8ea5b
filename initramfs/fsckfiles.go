package initramfs

import (
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// archiveFile is a file to put in the archive: name inside it, source path.
type archiveFile struct {
	name, src string
	perm      uint64
}

// fsckFiles lists e2fsck and what it needs to run, taken from a USR tree
// (the contents of /usr, as the image's USR holds them): the binary at
// usr/sbin/e2fsck, its ELF interpreter at the path the binary names, and
// the shared libraries it needs, recursively, under usr/lib/<triplet>.
// The init checks ROOT with it before mounting it; taking it from the
// image's own USR keeps it the e2fsprogs of the image's Debian release.
func fsckFiles(usr string) ([]archiveFile, error) {
	bin := filepath.Join(usr, "sbin", "e2fsck")
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("initramfs: e2fsck for the ROOT check: %w (is e2fsprogs in the image?)", err)
	}
	defer f.Close()
	triplet := map[elf.Machine]string{elf.EM_X86_64: "x86_64-linux-gnu", elf.EM_AARCH64: "aarch64-linux-gnu"}[f.Machine]
	if triplet == "" {
		return nil, fmt.Errorf("initramfs: e2fsck: unsupported machine %v", f.Machine)
	}
	out := []archiveFile{{name: "usr/sbin/e2fsck", src: bin, perm: 0o755}}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return nil, fmt.Errorf("initramfs: e2fsck interpreter: %w", err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		src, err := inTree(usr, interp)
		if err != nil {
			return nil, err
		}
		out = append(out, archiveFile{name: strings.TrimPrefix(interp, "/"), src: src, perm: 0o755})
	}
	libDir := path.Join("lib", triplet)
	seen := map[string]bool{}
	queue := []*elf.File{f}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		libs, err := cur.ImportedLibraries()
		if err != nil {
			return nil, fmt.Errorf("initramfs: e2fsck libraries: %w", err)
		}
		for _, lib := range libs {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			src, err := inTree(usr, "/usr/"+path.Join(libDir, lib))
			if err != nil {
				return nil, err
			}
			lf, err := elf.Open(src)
			if err != nil {
				return nil, fmt.Errorf("initramfs: e2fsck needs %s: %w", lib, err)
			}
			defer lf.Close()
			queue = append(queue, lf)
			out = append(out, archiveFile{name: path.Join("usr", libDir, lib), src: src, perm: 0o755})
		}
	}
	return out, nil
}

// inTree resolves an absolute path of the running system (/lib64/x,
// /usr/lib/x) inside the USR tree usr, following symlinks inside the tree
// (an absolute link target means the tree's, not the build host's).
func inTree(usr, abs string) (string, error) {
	rel := strings.TrimPrefix(path.Clean(abs), "/")
	rel = strings.TrimPrefix(rel, "usr/") // merged /usr: /lib64 is usr/lib64
	for range 16 {
		p := filepath.Join(usr, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("initramfs: %s is not in the USR tree %s: %w", abs, usr, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return p, nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			rel = strings.TrimPrefix(strings.TrimPrefix(path.Clean(target), "/"), "usr/")
		} else {
			rel = path.Join(path.Dir(rel), target)
		}
	}
	return "", fmt.Errorf("initramfs: %s: too many symlinks in %s", abs, usr)
}
