package slot

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestEnvRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		vars [][2]string
	}{
		{"initial", [][2]string{{"saved_entry", "a"}, {"next_entry", ""}}},
		{"escapes", [][2]string{{"x", `back\slash`}, {"y", "two\nlines"}}},
		{"empty", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEnv()
			for _, kv := range tc.vars {
				e.Set(kv[0], kv[1])
			}
			b, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != EnvSize || !bytes.HasPrefix(b, []byte("# GRUB Environment Block\n")) || b[EnvSize-1] != '#' {
				t.Fatalf("bad block %q", b)
			}
			got, err := ParseEnv(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Keys()) != len(tc.vars) {
				t.Fatalf("keys %v, want %v", got.Keys(), tc.vars)
			}
			for i, kv := range tc.vars {
				if got.Keys()[i] != kv[0] || got.Get(kv[0]) != kv[1] || !got.Has(kv[0]) {
					t.Errorf("%s = %q, want %q", kv[0], got.Get(kv[0]), kv[1])
				}
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	e := NewEnv()
	e.Set("big", strings.Repeat("x", EnvSize))
	if _, err := e.Encode(); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Errorf("oversized block: %v", err)
	}
	e = NewEnv()
	e.Set("a=b", "c")
	if _, err := e.Encode(); err == nil {
		t.Error("name with '=' accepted")
	}
	for _, bad := range []string{"no header\n", "# GRUB Environment Block\nnoequals\n", "# GRUB Environment Block\nk=unterminated"} {
		if _, err := ParseEnv([]byte(bad)); err == nil {
			t.Errorf("ParseEnv(%q) accepted", bad)
		}
	}
	e = NewEnv()
	e.Set("a", "1")
	e.Set("b", "2")
	e.Unset("a")
	e.Unset("zz")
	if k := e.Keys(); len(k) != 1 || k[0] != "b" || e.Has("a") {
		t.Errorf("after Unset: %v", k)
	}
}

// grub-editenv must accept what we write, and we must read what it writes.
func TestEnvAgainstGrubEditenv(t *testing.T) {
	bin, err := exec.LookPath("grub-editenv")
	if err != nil {
		t.Fatal("grub-editenv not installed: run make deps (package grub-common)")
	}
	dir := t.TempDir()
	ours := filepath.Join(dir, "ours")
	e := InitialEnv()
	e.Set("weird", "a\\b\nc")
	if err := WriteEnvFile(ours, e); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, ours, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("grub-editenv list: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "saved_entry=a\n") || !strings.Contains(string(out), "next_entry=\n") {
		t.Errorf("grub-editenv list of our block: %q", out)
	}
	// grub-editenv edits our block in place and we read its result.
	if out, err := exec.Command(bin, ours, "set", "next_entry=b", "extra=x y").CombinedOutput(); err != nil {
		t.Fatalf("grub-editenv set: %v: %s", err, out)
	}
	got, err := ReadEnvFile(ours)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"saved_entry": "a", "next_entry": "b", "weird": "a\\b\nc", "extra": "x y"}
	keys := got.Keys()
	sort.Strings(keys)
	if len(keys) != len(want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, got.Get(k), v)
		}
	}
	// A block created by grub-editenv itself.
	theirs := filepath.Join(dir, "theirs")
	if out, err := exec.Command(bin, theirs, "create").CombinedOutput(); err != nil {
		t.Fatalf("grub-editenv create: %v: %s", err, out)
	}
	if out, err := exec.Command(bin, theirs, "set", "saved_entry=b").CombinedOutput(); err != nil {
		t.Fatalf("grub-editenv set: %v: %s", err, out)
	}
	g2, err := ReadEnvFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	if g2.Get("saved_entry") != "b" || len(g2.Keys()) != 1 {
		t.Errorf("read %v from grub-editenv's block", g2.Keys())
	}
	// Our rewrite keeps the file's size and stays readable by grub-editenv.
	g2.Set("next_entry", "a")
	if err := WriteEnvFile(theirs, g2); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(theirs); st.Size() != EnvSize {
		t.Errorf("size %d after rewrite", st.Size())
	}
	out, err = exec.Command(bin, theirs, "list").CombinedOutput()
	if err != nil || string(out) != "saved_entry=b\nnext_entry=a\n" {
		t.Errorf("grub-editenv list after our rewrite: %v %q", err, out)
	}
}
