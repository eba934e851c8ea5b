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
	want := map[string]string{"saved_entry": "a", "next_entry": "b", "weird": "a\\b\nc", "extra": "x y", KeyGen: "1", KeyGenEnd: "1"}
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

// TestEnvCopiesTornWrite cuts a write of grubenv at every byte: the block
// being written holds a prefix of the new content and the rest of the old.
// What is read back (as grub.cfg chooses) is the state before the write or
// after it, never a mix, and the copy that counted is never written.
func TestEnvCopiesTornWrite(t *testing.T) {
	state := func(saved, next string) *Env {
		e := NewEnv()
		e.Set(KeySaved, saved)
		e.Set(KeyNext, next)
		return e
	}
	for _, tc := range []struct {
		name   string
		writes []*Env // written after InitialEnv; the last one is cut
	}{
		{"first write (makes the second copy)", []*Env{state("a", "b")}},
		{"second write (back to the first copy)", []*Env{state("a", "b"), state("b", "")}},
		{"third write", []*Env{state("a", "b"), state("b", ""), state("b", "a")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "grubenv")
			if err := WriteEnvFile(path, InitialEnv()); err != nil {
				t.Fatal(err)
			}
			for _, e := range tc.writes[:len(tc.writes)-1] {
				if err := WriteEnvFile(path, e); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, path)
			old, err := ReadEnvFile(path)
			if err != nil {
				t.Fatal(err)
			}
			last := tc.writes[len(tc.writes)-1]
			if err := WriteEnvFile(path, last); err != nil {
				t.Fatal(err)
			}
			after := snapshot(t, path)
			var target string
			for p := range after {
				if !bytes.Equal(before[p], after[p]) {
					if target != "" {
						t.Fatalf("one write changed both copies")
					}
					target = p
				}
			}
			if got, _ := ReadEnvFile(path); got.Get(KeySaved) != last.Get(KeySaved) || got.Get(KeyNext) != last.Get(KeyNext) {
				t.Fatalf("after the whole write: %v", got.Keys())
			}
			// Every byte of the variables, and the sector boundaries.
			cuts := []int{511, 512, 513, EnvSize - 1, EnvSize}
			for k := range 200 {
				cuts = append(cuts, k)
			}
			for _, k := range cuts {
				torn := append(append([]byte(nil), after[target][:k]...), padTo(before[target], EnvSize)[k:]...)
				if err := os.WriteFile(target, torn, 0o644); err != nil {
					t.Fatal(err)
				}
				got, err := ReadEnvFile(path)
				if err != nil {
					t.Fatalf("cut at byte %d: %v", k, err)
				}
				isOld := got.Get(KeySaved) == old.Get(KeySaved) && got.Get(KeyNext) == old.Get(KeyNext)
				isNew := got.Get(KeySaved) == last.Get(KeySaved) && got.Get(KeyNext) == last.Get(KeyNext)
				if !isOld && !isNew {
					t.Fatalf("cut at byte %d reads saved_entry=%q next_entry=%q: neither before nor after", k, got.Get(KeySaved), got.Get(KeyNext))
				}
				if k == EnvSize && !isNew {
					t.Fatal("the whole write does not read as the new state")
				}
			}
			// A copy zeroed or cut short (a file torn by its filesystem).
			for _, bad := range [][]byte{make([]byte, EnvSize), after[target][:100], nil} {
				os.WriteFile(target, bad, 0o644)
				got, err := ReadEnvFile(path)
				if err != nil {
					t.Fatalf("with the written copy destroyed (%d bytes): %v", len(bad), err)
				}
				isOld := got.Get(KeySaved) == old.Get(KeySaved) && got.Get(KeyNext) == old.Get(KeyNext)
				// 100 bytes may hold every variable of the new block.
				isNew := len(bad) == 100 && got.Get(KeySaved) == last.Get(KeySaved) && got.Get(KeyNext) == last.Get(KeyNext)
				if !isOld && !isNew {
					t.Fatalf("with the written copy destroyed (%d bytes): saved_entry %q next_entry %q", len(bad), got.Get(KeySaved), got.Get(KeyNext))
				}
			}
		})
	}
}

func snapshot(t *testing.T, path string) map[string][]byte {
	out := map[string][]byte{}
	for _, p := range []string{path, path + EnvCopySuffix} {
		out[p], _ = os.ReadFile(p)
	}
	return out
}

// padTo is b, or zeros where the file did not exist yet.
func padTo(b []byte, n int) []byte {
	return append(append([]byte(nil), b...), make([]byte, max(0, n-len(b)))...)
}

// A legacy single block (an image from before the copies) is read and
// rewritten in place as before; no second copy appears.
func TestEnvLegacySingleBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grubenv")
	e := NewEnv()
	e.Set(KeySaved, "a")
	e.Set(KeyNext, "")
	b, _ := e.Encode()
	os.WriteFile(path, b, 0o644)
	e.Set(KeyNext, "b")
	if err := WriteEnvFile(path, e); err != nil {
		t.Fatal(err)
	}
	got, err := ReadEnvFile(path)
	if err != nil || got.Get(KeyNext) != "b" || got.Has(KeyGen) {
		t.Fatalf("legacy block: %v %v", err, got)
	}
	if _, err := os.Stat(path + EnvCopySuffix); err == nil {
		t.Error("a second copy appeared beside a legacy block")
	}
}
