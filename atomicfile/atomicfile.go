// Package atomicfile replaces files so that a power cut leaves either the
// old content or the new, never a mix or an empty file, and so that once a
// call returns the new content survives a cut: the data goes to a
// temporary file in the same directory, is fsynced, renamed over the
// target, and the directory is fsynced so the rename itself is on disk.
//
// github.com/google/renameio does the first three steps but, by design,
// not the directory fsync (it promises atomicity, not durability), which
// is the step a node's state needs after a power cut.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// TempPrefix starts every temporary file's name, so directory readers can
// skip them ("." also hides them from ls and from readers that skip dot
// files).
const TempPrefix = ".atomic-"

// File is the temporary file behind a pending replacement of its target.
// Write to it (and Chown it if needed), then Commit; Cleanup, deferred,
// removes it if Commit was never reached.
type File struct {
	*os.File
	target string
	perm   os.FileMode
	done   bool
}

// Create starts replacing path, which keeps its old content (or stays
// absent) until Commit. perm is applied exactly (no umask) at Commit.
func Create(path string, perm os.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return nil, err
	}
	return &File{File: f, target: path, perm: perm}, nil
}

// Commit makes the written content path's: fsync, mode, close, rename,
// fsync of the directory. On error path is unchanged (or, if only the
// directory fsync failed, replaced but maybe not yet durable) and the
// temporary file is gone.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("atomicfile: %s already committed or cleaned up", f.target)
	}
	f.done = true
	tmp := f.Name()
	err := f.Sync()
	if err == nil {
		// After any Chown: chown clears setuid/setgid bits.
		err = f.Chmod(f.perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.target)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.target, err)
	}
	return SyncDir(filepath.Dir(f.target))
}

// Cleanup drops an uncommitted replacement; after Commit it does nothing.
// Meant to be deferred right after Create.
func (f *File) Cleanup() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// WriteFile replaces path with data, mode perm, as Create, Write and Commit.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// CopyFile replaces dst with the content of src, mode perm, as WriteFile
// does, streaming rather than reading src whole.
func CopyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := Create(dst, perm)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := io.Copy(f, in); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return f.Commit()
}

// Rename moves a file whose content the caller already fsynced (a finished
// download, a symlink) to newpath and fsyncs the directories involved, so
// the move survives a power cut once Rename returns.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	if od, nd := filepath.Dir(oldpath), filepath.Dir(newpath); od != nd {
		if err := SyncDir(od); err != nil {
			return err
		}
	}
	return SyncDir(filepath.Dir(newpath))
}

// SyncDir fsyncs a directory, making the creations, renames and removals
// of entries in it durable. Filesystems that cannot fsync a directory
// (EINVAL, ENOTSUP) are not an error: there is nothing more to be done.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
