package slot

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBootDisk(t *testing.T) {
	root := t.TempDir()
	dev := filepath.Join(root, "dev")
	byUUID := filepath.Join(dev, "disk", "by-partuuid")
	sysDisk := filepath.Join(root, "sys", "devices", "pci0", "virtio1", "block", "vda")
	sysClass := filepath.Join(root, "sys", "class", "block")
	for _, d := range []string{byUUID, filepath.Join(sysDisk, "vda3"), sysClass} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(dev, "vda3"), nil, 0o600)
	os.WriteFile(filepath.Join(sysDisk, "vda3", "partition"), []byte("3\n"), 0o644)
	os.Symlink("../../vda3", filepath.Join(byUUID, "00575089-7289-5d4f-8576-132bbd84d410"))
	os.Symlink(filepath.Join(sysDisk, "vda3"), filepath.Join(sysClass, "vda3"))
	cmdline := filepath.Join(root, "cmdline")
	os.WriteFile(cmdline, []byte("panic=10 pith.slot=a pith.usr=PARTUUID=00575089-7289-5D4F-8576-132BBD84D410 quiet\n"), 0o644)
	got, err := BootDisk(cmdline, byUUID, sysClass)
	if err != nil || got != filepath.Join(dev, "vda") {
		t.Fatalf("BootDisk = %q, %v; want %s", got, err, filepath.Join(dev, "vda"))
	}
	os.WriteFile(cmdline, []byte("pith.slot=a\n"), 0o644)
	if _, err := BootDisk(cmdline, byUUID, sysClass); err == nil {
		t.Fatal("no pith.usr= accepted")
	}
}
