package slot

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestClearBootCount(t *testing.T) {
	for _, tc := range []struct{ count, want string }{{"a2", "a2"}, {"", ""}} {
		env := filepath.Join(t.TempDir(), "grubenv")
		e := InitialEnv()
		if tc.count != "" {
			e.Set(KeyBootCount, tc.count)
		}
		if err := WriteEnvFile(env, e); err != nil {
			t.Fatal(err)
		}
		got, err := ClearBootCount(env)
		if err != nil || got != tc.want {
			t.Errorf("ClearBootCount with %q = %q, %v", tc.count, got, err)
		}
		after, err := ReadEnvFile(env)
		if err != nil || after.Get(KeyBootCount) != "" || after.Get(KeySaved) != "a" {
			t.Errorf("grubenv after ClearBootCount: %v %v", after, err)
		}
		// GRUB reads what was written.
		if out, err := exec.Command("grub-editenv", env, "list").CombinedOutput(); err != nil {
			t.Errorf("grub-editenv list: %v\n%s", err, out)
		}
	}
	if _, err := ClearBootCount(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Errorf("missing grubenv: %v", err)
	}
}
