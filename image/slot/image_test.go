package slot

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestImageSlotState(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy", "mmd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: run make deps", tool)
		}
	}
	img := newDisk(t)
	// A FAT ESP at partition 1 (sector 2048, 4 MiB) holding grub/grubenv.
	env := filepath.Join(t.TempDir(), "grubenv")
	if err := WriteEnvFile(env, InitialEnv()); err != nil {
		t.Fatal(err)
	}
	vol := img + "@@1048576"
	for _, args := range [][]string{
		{"mkfs.vfat", "--offset=2048", "-n", "EFI-SYSTEM", img, "4096"},
		{"mmd", "-i", vol, "::/grub"},
		{"mcopy", "-i", vol, env, "::/grub/grubenv"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if err := WritePrio(img, A, InitialA); err != nil {
		t.Fatal(err)
	}
	st, err := ImageStatus(img)
	if err != nil {
		t.Fatal(err)
	}
	if st.Saved != "a" || st.Next != "" || st.Default() != A {
		t.Errorf("initial image status %+v", st)
	}
	if err := ImageSetTrial(img, B); err != nil {
		t.Fatal(err)
	}
	st, _ = ImageStatus(img)
	if st.Next != "b" || st.Parts[B].Prio != (Prio{Priority: 2, Tries: 1}) {
		t.Errorf("after ImageSetTrial: %+v", st)
	}
	// grub-editenv reads what landed in the ESP.
	out := filepath.Join(t.TempDir(), "back")
	// The trial went to the second copy (generation 2); the first is untouched.
	if b, err := exec.Command("mcopy", "-i", vol, "::/grub/grubenv.1", out).CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v %s", err, b)
	}
	if got, err := exec.Command("grub-editenv", out, "list").Output(); err != nil || string(got) != "pith_gen=2\nsaved_entry=a\nnext_entry=b\npith_gen_end=2\n" {
		t.Errorf("grub-editenv list: %q %v", got, err)
	}
	if st, _ := os.Stat(out); st.Size() != EnvSize {
		t.Errorf("grubenv size %d", st.Size())
	}
	if err := ImageMarkGood(img, B); err != nil {
		t.Fatal(err)
	}
	st, _ = ImageStatus(img)
	if st.Saved != "b" || st.Next != "" || !st.Parts[B].Successful {
		t.Errorf("after ImageMarkGood: %+v", st)
	}
	if _, err := ImageStatus(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing image accepted")
	}
}
