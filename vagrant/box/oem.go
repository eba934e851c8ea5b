package box

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode/utf16"

	"github.com/pith-os/pith/image/disk"
	"github.com/pith-os/pith/image/fsimg"
)

// OEMConfigPath is where the box's cloud-config goes on the OEM partition
// (mounted at /usr/share/oem on the node, as on CoreOS).
const OEMConfigPath = "cloud-config.yml"

// OEMCloudConfig is the box's OEM cloud-config: the vagrant user with
// Vagrant's insecure key, passwordless sudo, and the same groups as core.
// pithd applies it on first boot, before any user-data, so `vagrant up`
// can log in with nothing passed to QEMU.
func OEMCloudConfig() string {
	return `#cloud-config
# The Vagrant box's OEM config (written by pith box): Vagrant logs in as
# vagrant with its well-known insecure key (local VMs only).
users:
  - name: ` + User + `
    gecos: Vagrant
    shell: /bin/bash
    groups: [adm, sudo, docker, systemd-journal]
    ssh-authorized-keys:
      - ` + InsecurePublicKey + `
write_files:
  - path: /etc/sudoers.d/` + User + `
    permissions: "0440"
    owner: root:root
    content: |
      ` + User + ` ALL=(ALL) NOPASSWD: ALL
`
}

// gptPartition is one GPT entry: where it is on the disk.
type gptPartition struct {
	Name          string
	Offset, Size  int64
	FirstLBA, End uint64
}

// findGPTPartition reads the primary GPT of a raw disk and returns the
// partition named label.
func findGPTPartition(r io.ReaderAt, label string) (gptPartition, error) {
	var hdr [92]byte
	if _, err := r.ReadAt(hdr[:], 512); err != nil {
		return gptPartition{}, fmt.Errorf("read GPT header: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return gptPartition{}, errors.New("no GPT on the image (is it a Pith image?)")
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:80])
	count := binary.LittleEndian.Uint32(hdr[80:84])
	size := binary.LittleEndian.Uint32(hdr[84:88])
	if size < 128 || count > 1024 {
		return gptPartition{}, fmt.Errorf("GPT header: %d entries of %d bytes is not a GPT this tool reads", count, size)
	}
	e := make([]byte, size)
	for i := uint32(0); i < count; i++ {
		if _, err := r.ReadAt(e, int64(entriesLBA)*512+int64(i)*int64(size)); err != nil {
			return gptPartition{}, fmt.Errorf("read GPT entry %d: %w", i+1, err)
		}
		first, last := binary.LittleEndian.Uint64(e[32:40]), binary.LittleEndian.Uint64(e[40:48])
		if first == 0 && last == 0 {
			continue
		}
		u := make([]uint16, 36)
		for j := range u {
			u[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		name := strings.TrimRight(string(utf16.Decode(u)), "\x00")
		if name == label {
			return gptPartition{Name: name, Offset: int64(first) * 512, Size: int64(last-first+1) * 512, FirstLBA: first, End: last}, nil
		}
	}
	return gptPartition{}, fmt.Errorf("the image has no partition labelled %s (is it a Pith image?)", label)
}

// ext4Identity is what a rebuilt filesystem keeps from the old one.
type ext4Identity struct{ Label, UUID, HashSeed string }

// readExt4Identity reads label, UUID and directory hash seed from an ext4
// superblock (at byte 1024 of the filesystem).
func readExt4Identity(r io.ReaderAt) (ext4Identity, error) {
	var sb [1024]byte
	if _, err := r.ReadAt(sb[:], 1024); err != nil {
		return ext4Identity{}, err
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return ext4Identity{}, errors.New("the OEM partition holds no ext4 filesystem")
	}
	uuid := func(b []byte) string {
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	}
	return ext4Identity{
		Label:    string(bytes.TrimRight(sb[0x78:0x88], "\x00")),
		UUID:     uuid(sb[0x68:0x78]),
		HashSeed: uuid(sb[0xEC:0xFC]),
	}, nil
}

// AddOEMFiles writes out, a qcow2 copy of image whose OEM partition holds
// its old files plus files (path -> content). The OEM filesystem is
// rebuilt with the image builder's own recipe (same label, UUID and hash
// seed, every time set to epoch), so the same image gives the same box.
func AddOEMFiles(ctx context.Context, image, out string, files map[string]string, epoch int64) error {
	work, err := os.MkdirTemp(filepath.Dir(out), ".pith-box-oem-")
	if err != nil {
		return fmt.Errorf("cannot work beside %s: %v", out, errors.Unwrap(err))
	}
	defer os.RemoveAll(work)
	raw := filepath.Join(work, "disk.raw")
	if b, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, raw).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert %s: %v: %s (install qemu-utils)", image, err, bytes.TrimSpace(b))
	}
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	part, err := findGPTPartition(f, "OEM")
	if err != nil {
		return fmt.Errorf("%s: %w", image, err)
	}
	old := io.NewSectionReader(f, part.Offset, part.Size)
	id, err := readExt4Identity(old)
	if err != nil {
		return fmt.Errorf("%s: %w", image, err)
	}
	oldImg := filepath.Join(work, "oem-old.ext4")
	if err := copyTo(oldImg, old); err != nil {
		return err
	}
	tree := filepath.Join(work, "oem")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return err
	}
	if b, err := exec.CommandContext(ctx, "debugfs", "-R", "rdump / "+tree, oldImg).CombinedOutput(); err != nil {
		return fmt.Errorf("debugfs rdump of the OEM partition: %v: %s (install e2fsprogs)", err, bytes.TrimSpace(b))
	}
	// mkfs.ext4 makes its own lost+found.
	if err := os.RemoveAll(filepath.Join(tree, "lost+found")); err != nil {
		return err
	}
	for name, content := range files {
		p := filepath.Join(tree, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	newImg := filepath.Join(work, "oem.ext4")
	if err := fsimg.Ext4(ctx, newImg, part.Size, id.Label, id.UUID, id.HashSeed, tree, epoch); err != nil {
		return fmt.Errorf("rebuild the OEM filesystem: %w", err)
	}
	nf, err := os.Open(newImg)
	if err != nil {
		return err
	}
	defer nf.Close()
	if _, err := io.Copy(io.NewOffsetWriter(f, part.Offset), io.LimitReader(nf, part.Size)); err != nil {
		return fmt.Errorf("write the OEM partition back: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return disk.Qcow2(ctx, raw, out, nil)
}

func copyTo(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
