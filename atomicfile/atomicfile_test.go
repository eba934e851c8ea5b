package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// leftovers lists temporary files left in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), TempPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestWriteFile(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, tc := range []struct {
		name     string
		existing string // "" = no file before
		data     string
		perm     os.FileMode
	}{
		{"new file", "", "hello\n", 0o644},
		{"replace", "old content that is longer\n", "new\n", 0o600},
		{"empty content", "x", "", 0o640},
		{"setuid kept despite umask", "", "#!/bin/sh\n", 0o755 | os.ModeSetuid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if tc.existing != "" {
				if err := os.WriteFile(p, []byte(tc.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(p, []byte(tc.data), tc.perm); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil || string(b) != tc.data {
				t.Fatalf("content %q, %v; want %q", b, err, tc.data)
			}
			st, _ := os.Stat(p)
			if got := st.Mode() & (os.ModePerm | os.ModeSetuid); got != tc.perm {
				t.Errorf("mode %v, want %v", got, tc.perm)
			}
			if l := leftovers(t, dir); len(l) > 0 {
				t.Errorf("temporary files left: %v", l)
			}
		})
	}
}

// A replacement that fails before its rename (as a cut would stop it)
// leaves the old content and no temporary file.
func TestFailureKeepsOld(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(f *File) error
	}{
		{"abandoned without commit", func(f *File) error { f.Cleanup(); return nil }},
		{"fsync fails", func(f *File) error { f.File.Close(); return f.Commit() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "state.json")
			if err := WriteFile(p, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := Create(p, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("new, half written"); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(p); string(b) != "old" {
				t.Fatalf("target changed before commit: %q", b)
			}
			err = tc.fail(f)
			if tc.name != "abandoned without commit" && err == nil {
				t.Fatal("commit succeeded on a closed file")
			}
			if b, _ := os.ReadFile(p); string(b) != "old" {
				t.Errorf("target %q after a failed replacement, want the old content", b)
			}
			if l := leftovers(t, dir); len(l) > 0 {
				t.Errorf("temporary files left: %v", l)
			}
			if err := f.Commit(); err == nil {
				t.Error("a second Commit succeeded")
			}
		})
	}
}

func TestWriteFileBadDir(t *testing.T) {
	err := WriteFile(filepath.Join(t.TempDir(), "missing", "f"), []byte("x"), 0o644)
	if err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestRename(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "x.part")
	if err := os.WriteFile(src, []byte("payload"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{filepath.Join(dir, "x"), filepath.Join(sub, "x")} {
		if err := Rename(src, dst); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(dst); err != nil || string(b) != "payload" {
			t.Fatalf("%s: %q %v", dst, b, err)
		}
		src = dst
	}
	if err := Rename(filepath.Join(dir, "gone"), filepath.Join(dir, "y")); err == nil {
		t.Error("renaming a missing file succeeded")
	}
	if err := SyncDir(filepath.Join(dir, "nope")); err == nil {
		t.Error("SyncDir of a missing directory succeeded")
	}
}

func TestSyncFS(t *testing.T) {
	if err := SyncFS(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := SyncFS(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("SyncFS of a missing directory succeeded")
	}
}

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("new content"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, src string
		perm      os.FileMode
		want      string // dst's content afterwards
		wantErr   bool
	}{
		{name: "copy with the given mode", src: src, perm: 0o640, want: "new content"},
		{name: "setuid bit kept", src: src, perm: os.ModeSetuid | 0o755, want: "new content"},
		{name: "missing source keeps the old file", src: filepath.Join(dir, "absent"), perm: 0o644, want: "old", wantErr: true},
		{name: "a directory as source keeps the old file", src: dir, perm: 0o644, want: "old", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			err := CopyFile(tc.src, dst, tc.perm)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CopyFile: %v, want error %v", err, tc.wantErr)
			}
			got, rerr := os.ReadFile(dst)
			if rerr != nil || string(got) != tc.want {
				t.Fatalf("dst = %q, %v; want %q", got, rerr, tc.want)
			}
			if fi, _ := os.Stat(dst); err == nil && fi.Mode()&(os.ModePerm|os.ModeSetuid) != tc.perm&(os.ModePerm|os.ModeSetuid) {
				t.Fatalf("mode %v, want %v", fi.Mode(), tc.perm)
			}
			if l := leftovers(t, filepath.Dir(dst)); len(l) != 0 {
				t.Fatalf("temporary files left: %v", l)
			}
		})
	}
}
