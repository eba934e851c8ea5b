package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pith-os/pith/initramfs/internal/kmodtest"
	"github.com/pith-os/pith/initramfs/kmod"
	"github.com/u-root/mkuimage/cpio"
)

const testKernel = "6.1.0-99-cloud-amd64"

// fixture lays out a modules directory and fake init/busybox ELF files.
func fixture(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	mods := filepath.Join(dir, "lib/modules", testKernel)
	kmodtest.WriteTree(t, mods)
	if err := os.WriteFile(filepath.Join(mods, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	initBin := filepath.Join(dir, "pith-init")
	bbBin := filepath.Join(dir, "bb")
	if err := os.WriteFile(initBin, []byte("\x7fELF pith-init"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bbBin, []byte("\x7fELF busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Options{
		KernelVersion: testKernel,
		ModulesDir:    mods,
		Out:           filepath.Join(dir, "out", "initrd"),
		InitBinary:    initBin,
		BusyboxBinary: bbBin,
		CacheDir:      filepath.Join(dir, "cache"),
		Commands:      []string{"github.com/u-root/u-root/cmds/core/gosh", "github.com/u-root/u-root/cmds/core/ls"},
		Modules:       []string{"virtio_blk", "dm-verity", "ext4", "nvme"},
	}
}

func readArchive(t *testing.T, file, compression string) []cpio.Record {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader
	if compression == "gzip" {
		gr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = gr
	} else {
		zr, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func content(t *testing.T, r cpio.Record) string {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBuildContents(t *testing.T) {
	for _, comp := range []string{"zstd", "gzip"} {
		t.Run(comp, func(t *testing.T) {
			opts := fixture(t)
			opts.Compression = comp
			res, err := Build(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			wantOrder := []string{"virtio_ring", "virtio", "virtio_blk", "dm_bufio", "dm_mod", "dm_verity"}
			if !reflect.DeepEqual(res.Modules, wantOrder) || !reflect.DeepEqual(res.Builtin, []string{"ext4"}) || !reflect.DeepEqual(res.Absent, []string{"nvme"}) {
				t.Errorf("modules %v builtin %v absent %v; want %v [ext4] [nvme]", res.Modules, res.Builtin, res.Absent, wantOrder)
			}
			recs := readArchive(t, opts.Out, comp)
			byName := map[string]cpio.Record{}
			seen := map[string]bool{}
			for i, r := range recs {
				byName[r.Name] = r
				if i > 0 && recs[i-1].Name >= r.Name {
					t.Errorf("entries not sorted: %s after %s", r.Name, recs[i-1].Name)
				}
				if d := path.Dir(r.Name); d != "." && !seen[d] {
					t.Errorf("%s comes before its directory %s", r.Name, d)
				}
				seen[r.Name] = true
				if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
					t.Errorf("%s: mtime %d uid %d gid %d, want all 0", r.Name, r.MTime, r.UID, r.GID)
				}
			}
			check := func(name string, mode uint64, body string) {
				t.Helper()
				r, ok := byName[name]
				if !ok {
					t.Errorf("%s missing", name)
					return
				}
				if r.Mode != mode {
					t.Errorf("%s mode %#o, want %#o", name, r.Mode, mode)
				}
				if body != "" && content(t, r) != body {
					t.Errorf("%s = %q, want %q", name, content(t, r), body)
				}
			}
			check("init", cpio.S_IFREG|0o755, "\x7fELF pith-init")
			check("bbin/bb", cpio.S_IFREG|0o755, "\x7fELF busybox")
			check("bbin/ls", cpio.S_IFLNK|0o777, "bb")
			check("bin/sh", cpio.S_IFLNK|0o777, "../bbin/gosh")
			check("tmp", cpio.S_IFDIR|0o1777, "")
			check("sysroot", cpio.S_IFDIR|0o755, "")
			check("dev/console", cpio.S_IFCHR|0o600, "")
			if c := byName["dev/console"]; c.Rmajor != 5 || c.Rminor != 1 {
				t.Errorf("dev/console is %d:%d, want 5:1", c.Rmajor, c.Rminor)
			}
			modDir := "lib/modules/" + testKernel + "/"
			// Compressed modules are stored decompressed, under .ko names.
			for _, rel := range []string{"kernel/drivers/block/virtio_blk.ko", "kernel/drivers/md/dm-verity.ko", "kernel/drivers/md/dm-bufio.ko"} {
				r, ok := byName[modDir+rel]
				if !ok {
					t.Errorf("%s missing", modDir+rel)
					continue
				}
				if !strings.HasPrefix(content(t, r), "\x7fELF") {
					t.Errorf("%s is not a plain ELF module", rel)
				}
			}
			dep, err := kmod.ParseDep(strings.NewReader(content(t, byName[modDir+"modules.dep"])))
			if err != nil {
				t.Fatal(err)
			}
			list := strings.Fields(content(t, byName[modDir+"pith.modules"]))
			order, missing, err := dep.Resolve(list)
			if err != nil || !reflect.DeepEqual(order, wantOrder) || len(missing) != 0 {
				t.Errorf("the init would load %v (missing %v, err %v), want %v", order, missing, err, wantOrder)
			}
			for _, m := range order {
				if _, ok := byName[modDir+dep.Path[m]]; !ok {
					t.Errorf("modules.dep names %s, which is not in the archive", dep.Path[m])
				}
			}
		})
	}
}

func TestBuildReproducible(t *testing.T) {
	opts := fixture(t)
	if _, err := Build(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(opts.Out)
	if err != nil {
		t.Fatal(err)
	}
	// Same inputs with different host metadata: new mtimes and a copy of
	// the modules in another directory.
	other := t.TempDir()
	if err := os.CopyFS(other, os.DirFS(opts.ModulesDir)); err != nil {
		t.Fatal(err)
	}
	opts.ModulesDir = other
	if _, err := Build(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(opts.Out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Errorf("two builds differ (%d vs %d bytes)", len(first), len(second))
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"no modules dir", func(o *Options) { o.ModulesDir = filepath.Join(o.ModulesDir, "nope") }, "modules directory"},
		{"missing init", func(o *Options) { o.InitBinary += ".missing" }, "make bin"},
		{"dynamic init", func(o *Options) {
			os.WriteFile(o.InitBinary, []byte("\x7fELF.../lib64/ld-linux-x86-64.so.2..."), 0o755)
		}, "CGO_ENABLED=0"},
		{"bad compression", func(o *Options) { o.Compression = "lz4" }, "use zstd or gzip"},
		{"no kernel version", func(o *Options) { o.KernelVersion = "" }, "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := fixture(t)
			tt.modify(&opts)
			_, err := Build(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if _, err := os.Stat(opts.Out); !os.IsNotExist(err) {
				t.Errorf("output exists after a failed build")
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(opts.Out), ".*tmp*")); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

func TestUrootVersionMatchesGoMod(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/u-root/u-root " + urootFallbackVersion
	if !strings.Contains(string(b), want) {
		t.Errorf("go.mod has no %q: update urootFallbackVersion", want)
	}
}
