package units

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web.service": true, "mongo@1.service": true,
		"": false, "../x.service": false, "a/b.service": false, ".hidden": false, "..": false, "a\x00.service": false,
	} {
		if err := CheckName(name); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v", name, err)
		}
	}
}

func TestWriteAndList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "fleet", "units")
	if got, err := listDir(dir); err != nil || len(got) != 0 {
		t.Fatalf("missing dir: %v %v", got, err)
	}
	body := []byte("[Service]\nExecStart=/bin/true\n")
	if err := writeFile(filepath.Join(dir, "a.service"), body); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(dir, "a.service"), append(body, '#')); err != nil {
		t.Fatal(err)
	}
	// A leftover temp file from a crash is not a unit.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-b.service-1"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := listDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["a.service"] != HashBytes(append(body, '#')) {
		t.Fatalf("listDir = %v", got)
	}
	fi, err := os.Stat(filepath.Join(dir, "a.service"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
}
