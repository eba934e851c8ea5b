package initramfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBootQEMURootLuks: an encrypted ROOT stops the boot, with one clear
// line, when it cannot be opened, before anything mounts it. ROOT's
// partition gets a LUKS2 header as cryptsetup writes it: with Pith's
// subsystem (pith-root:root) pith-init sets up dm-verity and runs the
// USR's tools in a chroot to open it (the test USR has none, so it fails
// there, as a missing TPM would); without it (a LUKS volume Pith did not
// make) it refuses at once. Neither boot mounts ROOT or switches root.
func TestBootQEMURootLuks(t *testing.T) {
	t.Parallel() // each boots its own QEMU: two at a time use both cores
	dir := t.TempDir()
	vmlinuz, initrd, systemd := storageInitrd(t, dir, "cryptsetup")
	data := filepath.Join(dir, "vdb.img")
	mustRun(t, "", "truncate", "-s", "1M", data)
	const stopped = "the boot stops here (not rebooting)"
	for _, tc := range []struct {
		name      string
		subsystem []string
		want      []string
	}{
		{"pith volume the TPM does not open", []string{"--subsystem", "pith-root:root"}, []string{
			`ROOT \(/dev/vd[ab]9\) is encrypted \(LUKS2 volume root\): opening it through the TPM`,
			`dm-verity: /dev/(dm-0|mapper/usr) checks /dev/vd[ab]3`,
			`pith-init: FAILED: ROOT \(/dev/vd[ab]9\) is encrypted and the TPM did not open it \(modprobe dm_crypt xts: modprobe is not in this image's /usr .*\): the key is sealed to PCR 7`,
			`pith-init: the boot stops here \(not rebooting\)`}},
		{"foreign volume", nil, []string{
			`pith-init: FAILED: ROOT \(/dev/vd[ab]9\) is encrypted, but its LUKS2 subsystem is "", not pith-root:<name>: not a volume Pith made`,
			`pith-init: the boot stops here \(not rebooting\)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := t.TempDir()
			disk, rootHash := makeBootDisk(t, sub, systemd)
			luksRoot(t, sub, disk, tc.subsystem...)
			cmdline := "pith.slot=a pith.usr=PARTUUID=" + bootUsrUUID + " pith.root=PARTUUID=" + bootRootUUID + " pith.usrhash=" + rootHash
			log := bootUntil(t, vmlinuz, initrd, cmdline, stopped, "", disk, data)
			expectInOrder(t, log, tc.want...)
			for _, never := range []string{"checked ROOT", "mounted ROOT", "switching root"} {
				if strings.Contains(log, never) {
					t.Errorf("the console has %q: ROOT was used unopened", never)
				}
			}
			if tc.subsystem == nil && strings.Contains(log, "dm-verity:") {
				t.Error("USR was set up for a ROOT that cannot be Pith's")
			}
		})
	}
}

// luksRoot writes a LUKS2 volume (cryptsetup luksFormat with args) over
// the start of the boot disk's ROOT partition (9).
func luksRoot(t *testing.T, dir, disk string, args ...string) {
	first, _ := partSectors(t, disk, 9)
	vol, key := filepath.Join(dir, "root.luks"), filepath.Join(dir, "key")
	mustRun(t, "", "truncate", "-s", "20M", vol)
	if err := os.WriteFile(key, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "cryptsetup", append(append([]string{"luksFormat", "--type", "luks2", "--batch-mode", "--key-file", key,
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}, args...), vol)...)
	mustRun(t, "", "dd", "if="+vol, "of="+disk, "bs=512", fmt.Sprintf("seek=%d", first), "conv=notrunc", "status=none")
}
