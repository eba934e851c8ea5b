package slot

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrioBits(t *testing.T) {
	tests := []struct {
		attr uint64
		p    Prio
	}{
		{0, Prio{}},
		{1 << 48, Prio{Priority: 1}},
		{1<<48 | 1<<56, Prio{Priority: 1, Successful: true}},
		{0xf<<48 | 0xf<<52 | 1<<56, Prio{Priority: 15, Tries: 15, Successful: true}},
		{2<<48 | 1<<52, Prio{Priority: 2, Tries: 1}},
	}
	for _, tc := range tests {
		if got := DecodePrio(tc.attr); got != tc.p {
			t.Errorf("DecodePrio(%#x) = %+v, want %+v", tc.attr, got, tc.p)
		}
		// Other bits survive Apply.
		const other = 1 | 1<<2 | 1<<60
		got, err := tc.p.Apply(other | 0x1ff<<48)
		if err != nil || got != other|tc.attr {
			t.Errorf("Apply(%+v) = %#x %v, want %#x", tc.p, got, err, other|tc.attr)
		}
	}
	if _, err := (Prio{Priority: 16}).Apply(0); err == nil {
		t.Error("priority 16 accepted")
	}
}

func TestGoodAndTrialPrios(t *testing.T) {
	parts := map[Slot]Part{A: {Prio: InitialA}, B: {Prio: InitialB}}
	tr := TrialPrio(parts[A].Prio)
	if tr != (Prio{Priority: 2, Tries: 1}) {
		t.Errorf("trial of b after a good: %+v", tr)
	}
	parts[B] = Part{Prio: tr}
	g := GoodPrios(B, parts)
	if g[B] != (Prio{Priority: 2, Successful: true}) || g[A] != (Prio{Priority: 1, Successful: true}) {
		t.Errorf("good b: %+v", g)
	}
	// A failed trial (B never successful) does not stay a fallback.
	g = GoodPrios(A, map[Slot]Part{A: {Prio: InitialA}, B: {Prio: Prio{Priority: 2}}})
	if g[B] != (Prio{}) {
		t.Errorf("failed b after a marked good: %+v", g[B])
	}
}

// newDisk makes a GPT disk image with sgdisk (an independent writer).
func newDisk(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatal("sgdisk not installed: run make deps (package gdisk)")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	sgdisk(t, img, "-n", "1:2048:+4M", "-c", "1:EFI-SYSTEM",
		"-n", "3:0:+8M", "-c", "3:USR-A", "-t", "3:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6",
		"-n", "4:0:+8M", "-c", "4:USR-B", "-t", "4:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6",
		"-A", "3:set:0", "-A", "4:set:60")
	return img
}

func sgdisk(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("sgdisk", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// attrFlags returns what sgdisk prints as the partition's attribute word.
func attrFlags(t *testing.T, img string, n int) string {
	out := sgdisk(t, "-i", fmt.Sprint(n), img)
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Attribute flags: ") {
			return strings.TrimPrefix(l, "Attribute flags: ")
		}
	}
	t.Fatalf("no attribute flags in %s", out)
	return ""
}

func TestSlotStateOnDisk(t *testing.T) {
	img := newDisk(t)
	env := filepath.Join(t.TempDir(), "grubenv")
	if err := WriteEnvFile(env, InitialEnv()); err != nil {
		t.Fatal(err)
	}
	if err := WritePrio(img, A, InitialA); err != nil {
		t.Fatal(err)
	}
	// sgdisk sees our bits, and bit 0 set by sgdisk survived.
	if got := attrFlags(t, img, 3); got != "0101000000000001" {
		t.Errorf("USR-A attributes %s", got)
	}
	if out := sgdisk(t, "-v", img); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v after our write:\n%s", out)
	}
	st, err := Status(img, env)
	if err != nil {
		t.Fatal(err)
	}
	if st.Parts[A].Prio != InitialA || st.Parts[B].Prio != InitialB || st.Default() != A || st.Parts[B].Number != 4 {
		t.Errorf("initial status %+v", st)
	}
	want := strings.TrimSpace(strings.Split(strings.Split(sgdisk(t, "-i", "4", img), "unique GUID: ")[1], "\n")[0])
	if st.Parts[B].PartUUID != want {
		t.Errorf("PARTUUID %s, sgdisk says %s", st.Parts[B].PartUUID, want)
	}

	if err := SetTrial(img, env, B); err != nil {
		t.Fatal(err)
	}
	st, _ = Status(img, env)
	if st.Next != "b" || st.Default() != B || st.Parts[B].Prio != (Prio{Priority: 2, Tries: 1}) {
		t.Errorf("after SetTrial: %+v", st)
	}
	if got := attrFlags(t, img, 4); got != "1012000000000000" {
		t.Errorf("USR-B attributes after trial %s (bit 60 must survive)", got)
	}

	if err := MarkGood(img, env, B); err != nil {
		t.Fatal(err)
	}
	st, _ = Status(img, env)
	if st.Next != "" || st.Saved != "b" || st.Default() != B || !st.Parts[B].Successful || st.Parts[A].Priority != 1 {
		t.Errorf("after MarkGood: %+v", st)
	}
	if out := sgdisk(t, "-v", img); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	// The backup GPT got the same change: sgdisk reading only the backup
	// (after the primary is destroyed) still sees it.
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt(make([]byte, 512), 512)
	f.Close()
	if _, err := ReadParts(img); err == nil {
		t.Error("ReadParts accepted a disk without a primary GPT")
	}
	out, _ := exec.Command("sgdisk", "-i", "4", img).CombinedOutput()
	if !strings.Contains(string(out), "Attribute flags: 1102000000000000") {
		t.Errorf("backup GPT lacks the change:\n%s", out)
	}
}

func TestSlotErrors(t *testing.T) {
	if _, err := Parse("c"); err == nil {
		t.Error("slot c accepted")
	}
	notGPT := filepath.Join(t.TempDir(), "zero")
	os.WriteFile(notGPT, make([]byte, 1<<20), 0o644)
	if _, err := ReadParts(notGPT); err == nil || !strings.Contains(err.Error(), "no GPT") {
		t.Errorf("ReadParts(zeros) = %v", err)
	}
}
