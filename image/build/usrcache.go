package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pith-os/pith/image/fsimg"
)

// usrCacheKeep is how many USR images the cache keeps (newest first).
const usrCacheKeep = 3

// usrImage returns USR-A's squashfs: from the cache when the same tree was
// compressed before with the same tool and settings, else freshly made (and
// then cached).
func usrImage(ctx context.Context, in Inputs, workDir string, r *Reporter) (path string, cached bool, err error) {
	var cachePath string
	if in.UsrHash != "" && in.CacheDir != "" {
		ver, _ := exec.CommandContext(ctx, "mksquashfs", "-version").Output()
		first, _, _ := strings.Cut(string(ver), "\n")
		h := sha256.Sum256(fmt.Appendf(nil, "%s\x00zstd-%d\x00%s\x00%d", in.UsrHash, SquashfsLevel, first, in.Config.Epoch))
		cachePath = filepath.Join(in.CacheDir, "usr", "usr-"+hex.EncodeToString(h[:12])+".squashfs")
		if _, err := os.Stat(cachePath); err == nil {
			now := time.Now()
			os.Chtimes(cachePath, now, now) // keep recently used entries
			return cachePath, true, nil
		}
	}
	out := filepath.Join(workDir, "usr-a.squashfs")
	start := time.Now()
	bar := r.Bar(100, "squashfs")
	err = fsimg.Squashfs(ctx, out, in.UsrDir, in.Config.Epoch, fsimg.SquashfsOptions{Level: SquashfsLevel, Progress: func(p int) { bar.Set(p) }})
	bar.Finish()
	if err != nil {
		return "", false, err
	}
	if st, err := os.Stat(out); err == nil {
		r.logf("    compressed /usr into %s at %s of output", filepath.Base(out), rate(st.Size(), time.Since(start)))
	}
	if cachePath != "" {
		// A failure to cache only costs the next build time.
		if err := storeCache(out, cachePath); err != nil {
			r.logf("    (not cached: %v)", err)
		}
	}
	return out, false, nil
}

// storeCache copies (or hard-links) src to dst via a temporary name and
// prunes old entries.
func storeCache(src, dst string) error {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(src, tmp); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	pruneCache(dir, usrCacheKeep)
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// pruneCache removes all but the keep most recently used USR images.
func pruneCache(dir string, keep int) {
	ents, err := filepath.Glob(filepath.Join(dir, "usr-*.squashfs"))
	if err != nil {
		return
	}
	type fe struct {
		path string
		mod  int64
	}
	var fs []fe
	for _, p := range ents {
		if st, err := os.Stat(p); err == nil {
			fs = append(fs, fe{p, st.ModTime().UnixNano()})
		}
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].mod > fs[j].mod })
	for i := keep; i < len(fs); i++ {
		os.Remove(fs[i].path)
	}
}
