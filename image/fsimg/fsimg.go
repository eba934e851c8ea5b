// Package fsimg makes the filesystem images of Pith's partitions as plain
// files, reproducibly (same inputs and epoch, same bytes) and without root
// or loop devices: vfat with mkfs.vfat + mtools, ext4 with mkfs.ext4 -d +
// debugfs, squashfs with mksquashfs.
package fsimg

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %v: %s", name, err, lastLines(out, 3))
	}
	return nil
}

func withoutEnv(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// sparseFile creates path as a sparse file of size bytes.
func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// File is a file to place into a filesystem image.
type File struct {
	Src string // host path
	Dst string // slash-separated path inside the filesystem
}

// Vfat writes a FAT32 filesystem of size bytes to out with the given label
// and volume serial, containing files. Timestamps come from epoch
// (mtools honours SOURCE_DATE_EPOCH; mkfs.vfat --invariant fixes the rest).
func Vfat(ctx context.Context, out string, size int64, label string, volID uint32, files []File, epoch int64) error {
	os.Remove(out)
	if err := run(ctx, nil, "mkfs.vfat", "-C", "--invariant", "-F", "32", "-n", label,
		"-i", fmt.Sprintf("%08X", volID), out, strconv.FormatInt(size/1024, 10)); err != nil {
		return err
	}
	env := []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10), "MTOOLS_SKIP_CHECK=1"}
	// Directories first, parents before children, in a fixed order.
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Dst); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var ds []string
	for d := range dirs {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	if len(ds) > 0 {
		args := []string{"-i", out}
		for _, d := range ds {
			args = append(args, "::/"+d)
		}
		if err := run(ctx, env, "mmd", args...); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := run(ctx, env, "mcopy", "-i", out, f.Src, "::/"+f.Dst); err != nil {
			return err
		}
	}
	return nil
}

// VfatSerial formats a volume serial the way GRUB's search --fs-uuid and
// blkid print it ("1234-ABCD").
func VfatSerial(volID uint32) string {
	return fmt.Sprintf("%04X-%04X", volID>>16, volID&0xffff)
}

// Ext4 writes an ext4 filesystem of size bytes to out holding a copy of
// srcDir ("" for an empty filesystem), with every inode owned by root and
// timestamped epoch.
func Ext4(ctx context.Context, out string, size int64, label, uuid, hashSeed, srcDir string, epoch int64) error {
	if err := sparseFile(out, size); err != nil {
		return err
	}
	// E2FSPROGS_FAKE_TIME fixes the superblock's and new inodes' times.
	env := []string{"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(epoch, 10), "SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10)}
	args := []string{"-q", "-F", "-t", "ext4", "-L", label, "-U", uuid,
		"-E", "hash_seed=" + hashSeed + ",root_owner=0:0"}
	if srcDir != "" {
		args = append(args, "-d", srcDir)
	}
	if err := run(ctx, env, "mkfs.ext4", append(args, out)...); err != nil {
		return err
	}
	if srcDir == "" {
		return nil
	}
	// mkfs.ext4 -d copies atime/ctime and owners from the host; reset them.
	var script bytes.Buffer
	err := filepath.WalkDir(srcDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == srcDir {
			return err
		}
		rel, _ := filepath.Rel(srcDir, p)
		if strings.ContainsAny(rel, " \t\n\"") {
			return fmt.Errorf("ext4: unsupported file name %q", rel)
		}
		for _, f := range []string{"atime", "ctime", "mtime", "crtime"} {
			fmt.Fprintf(&script, "sif /%s %s @%d\n", rel, f, epoch)
		}
		fmt.Fprintf(&script, "sif /%s uid 0\nsif /%s gid 0\n", rel, rel)
		return nil
	})
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "debugfs", "-w", "-f", "-", out)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = &script
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("debugfs: %v: %s", err, lastLines(b, 3))
	}
	// debugfs reports per-command failures on its output but exits 0.
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "sif:") || strings.Contains(l, "not found") {
			return fmt.Errorf("debugfs: %s", l)
		}
	}
	return nil
}

// SquashfsOptions tune Squashfs.
type SquashfsOptions struct {
	Level    int               // zstd level (1-22)
	Progress func(percent int) // called as mksquashfs advances; may be nil
}

// Squashfs writes a zstd squashfs of srcDir to out, reproducibly: entries
// sorted, all times set to epoch, no appending to an old image.
func Squashfs(ctx context.Context, out, srcDir string, epoch int64, o SquashfsOptions) error {
	if o.Level == 0 {
		o.Level = 15
	}
	os.Remove(out)
	e := strconv.FormatInt(epoch, 10)
	args := []string{srcDir, out, "-noappend", "-comp", "zstd", "-Xcompression-level", strconv.Itoa(o.Level),
		"-reproducible", "-mkfs-time", e, "-all-time", e}
	cmd := exec.CommandContext(ctx, "mksquashfs", args...)
	// mksquashfs refuses SOURCE_DATE_EPOCH together with -mkfs-time.
	cmd.Env = withoutEnv(os.Environ(), "SOURCE_DATE_EPOCH")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mksquashfs: %w (install squashfs-tools: make deps)", err)
	}
	// mksquashfs redraws "[===  ] done/total  NN%" with \r as it goes.
	sc := bufio.NewScanner(stdout)
	sc.Split(scanLinesOrCR)
	for sc.Scan() {
		if m := progressRE.FindStringSubmatch(sc.Text()); m != nil && o.Progress != nil {
			n, _ := strconv.Atoi(m[1])
			o.Progress(n)
		}
	}
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("mksquashfs: %v: %s", err, lastLines(stderr.Bytes(), 3))
	}
	return nil
}

var progressRE = regexp.MustCompile(`\]\s+\d+/\d+\s+(\d+)%`)

func scanLinesOrCR(data []byte, atEOF bool) (int, []byte, error) {
	for i, c := range data {
		if c == '\n' || c == '\r' {
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
