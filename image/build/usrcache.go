package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/pith-os/pith/atomicfile"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pith-os/pith/image/fsimg"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/initramfs/verity"
)

// usrCacheKeep is how many USR images the cache keeps (newest first).
const usrCacheKeep = 3

// usrVerity is the dm-verity hash tree the builder appends to USR-A.
type usrVerity struct {
	RootHash string
	Salt     string // hex
	DataSize int64  // the filesystem's bytes; the superblock and tree follow
	TreeSize int64
}

// usrImage returns USR-A: the squashfs with its dm-verity hash tree
// appended (package verity's layout), from the cache when the same tree was
// compressed before with the same tool and settings, else freshly made (and
// then cached). A cached image's tree is checked against its data, which
// also yields the root hash.
func usrImage(ctx context.Context, in Inputs, workDir string, r *Reporter) (path string, cached bool, v usrVerity, err error) {
	ver, _ := exec.CommandContext(ctx, "mksquashfs", "-version").Output()
	first, _, _ := strings.Cut(string(ver), "\n")
	key := sha256.Sum256(fmt.Appendf(nil, "%s\x00zstd-%d\x00%s\x00%d\x00verity-sha256-4k", in.UsrHash, SquashfsLevel, first, in.Config.Epoch))
	var cachePath string
	if in.UsrHash != "" && in.CacheDir != "" {
		cachePath = filepath.Join(in.CacheDir, "usr", "usr-"+hex.EncodeToString(key[:12])+".squashfs")
		if _, err := os.Stat(cachePath); err == nil {
			if v, err = readVerity(cachePath); err == nil {
				now := time.Now()
				os.Chtimes(cachePath, now, now) // keep recently used entries
				return cachePath, true, v, nil
			}
			r.logf("    cached %s is damaged (%v): building it again", filepath.Base(cachePath), err)
			os.Remove(cachePath)
		}
	}
	out := filepath.Join(workDir, "usr-a.squashfs")
	start := time.Now()
	bar := r.Bar(100, "squashfs")
	err = fsimg.Squashfs(ctx, out, in.UsrDir, in.Config.Epoch, fsimg.SquashfsOptions{Level: SquashfsLevel, Progress: func(p int) { bar.Set(p) }})
	bar.Finish()
	if err != nil {
		return "", false, v, err
	}
	if st, err := os.Stat(out); err == nil {
		r.logf("    compressed /usr into %s at %s of output", filepath.Base(out), rate(st.Size(), time.Since(start)))
	}
	// Salt and UUID derive from the cache key: equal inputs, equal tree.
	salt := sha256.Sum256(append([]byte("pith usr verity salt\x00"), key[:]...))
	var uuid [16]byte
	copy(uuid[:], salt[16:])
	start = time.Now()
	if v, err = appendVerity(out, salt[:], uuid); err != nil {
		return "", false, v, err
	}
	r.logf("    dm-verity hash tree: %s after %s of squashfs in %s, root hash %s", layout.Human(v.TreeSize), layout.Human(v.DataSize), time.Since(start).Round(time.Millisecond), v.RootHash)
	if cachePath != "" {
		// A failure to cache only costs the next build time.
		if err := storeCache(out, cachePath); err != nil {
			r.logf("    (not cached: %v)", err)
		}
	}
	return out, false, v, nil
}

// appendVerity writes the hash tree after the filesystem in path.
func appendVerity(path string, salt []byte, uuid [16]byte) (usrVerity, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return usrVerity{}, err
	}
	defer f.Close()
	end, err := verity.FSEnd(f)
	if err != nil {
		return usrVerity{}, fmt.Errorf("USR image %s: %w", path, err)
	}
	// Whatever follows the filesystem (mksquashfs pads to 4 KiB) goes.
	if err := f.Truncate(end); err != nil {
		return usrVerity{}, err
	}
	root, err := verity.Format(f, end, salt, uuid)
	if err != nil {
		return usrVerity{}, fmt.Errorf("USR image %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return usrVerity{}, err
	}
	return usrVerity{RootHash: root, Salt: hex.EncodeToString(salt), DataSize: end, TreeSize: verity.TreeSize(end)}, f.Close()
}

// readVerity checks the hash tree of a USR image and returns its root.
func readVerity(path string) (usrVerity, error) {
	f, err := os.Open(path)
	if err != nil {
		return usrVerity{}, err
	}
	defer f.Close()
	sb, err := verity.Find(f)
	if err != nil {
		return usrVerity{}, err
	}
	root, err := verity.Check(f, sb)
	if err != nil {
		return usrVerity{}, err
	}
	data := int64(sb.DataBlocks) * verity.BlockSize
	return usrVerity{RootHash: root, Salt: hex.EncodeToString(sb.Salt), DataSize: data, TreeSize: verity.TreeSize(data)}, nil
}

// storeCache copies (or hard-links) src to dst via a temporary name and
// prunes old entries.
func storeCache(src, dst string) error {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Per process: builds sharing the cache may store the same entry at once.
	tmp := fmt.Sprintf("%s.tmp%d", dst, os.Getpid())
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if err := atomicfile.CopyFile(src, tmp, 0o644); err != nil {
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
