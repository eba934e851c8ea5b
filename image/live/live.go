package live

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/u-root/mkuimage/cpio"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/secureboot"
)

// Artifact names.
const (
	ISOName        = "pith.iso"
	PXEKernelName  = "pith-pxe.vmlinuz"
	PXEInitrdName  = "pith-pxe.initrd"
	PXEScriptName  = "pith-pxe.ipxe"
	USRInitrdPath  = "pith/usr.img" // where the USR image lands in the initramfs
	isoVolumeLabel = "PITH_LIVE"
)

// Parts are what a live system boots, taken from a built image.
type Parts struct {
	Kernel, Initrd string // the image's slot A kernel and initramfs
	USR            string // USR-A's content: the filesystem and its verity tree
	RootHash       string // USR-A's dm-verity root hash
	Version        string
	Cmdline        string // the image's slot A kernel line (console settings are kept)
}

// Extract copies slot A's kernel, initramfs and USR out of a built image
// into dir. It needs mtools (mcopy) for the ESP.
func Extract(ctx context.Context, img string, m *manifest.Manifest, dir string) (*Parts, error) {
	esp, ok := m.Partition(layout.LabelESP)
	if !ok {
		return nil, fmt.Errorf("%s: the manifest lists no %s partition", img, layout.LabelESP)
	}
	usr, ok := m.Partition(layout.LabelUSRA)
	if !ok || usr.Verity == nil || usr.ContentSize == 0 {
		return nil, fmt.Errorf("%s: the manifest's %s has no dm-verity tree (an image older than verity by default): rebuild it", img, layout.LabelUSRA)
	}
	p := &Parts{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), USR: filepath.Join(dir, "usr.img"),
		RootHash: usr.Verity.RootHash, Version: m.Version, Cmdline: m.KernelCmdline["a"]}
	for src, dst := range map[string]string{"::pith/vmlinuz-a": p.Kernel, "::pith/initrd-a": p.Initrd} {
		out, err := exec.CommandContext(ctx, "mcopy", "-n", "-i", fmt.Sprintf("%s@@%d", img, esp.Start), src, dst).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("mcopy %s from %s's ESP: %v: %s (make deps installs mtools)", src, img, err, strings.TrimSpace(string(out)))
		}
	}
	in, err := os.Open(img)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.Create(p.USR)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(out, io.NewSectionReader(in, usr.Start, usr.ContentSize))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("copying %s: %v", layout.LabelUSRA, err)
	}
	return p, nil
}

// KernelArgs is the live system's kernel line: the image's console and
// panic settings, pith.live and the USR root hash. The disk's pith.usr=,
// pith.root=, pith.oem= and pith.slot= do not apply; nor does its
// platform: a live system finds its datasource by probing.
func KernelArgs(p *Parts, extra ...string) string {
	var args []string
	for _, f := range strings.Fields(p.Cmdline) {
		k, _, _ := strings.Cut(f, "=")
		switch k {
		case "pith.slot", "pith.usr", "pith.root", "pith.oem", "pith.usrhash", "pith.platform":
			continue
		}
		args = append(args, f)
	}
	args = append(args, "pith.live", "pith.usrhash="+p.RootHash)
	return strings.Join(append(args, extra...), " ")
}

// writeUSRCpio writes the newc cpio holding the USR image at
// USRInitrdPath (uncompressed: squashfs is compressed already).
func writeUSRCpio(w io.Writer, usr string, epoch int64) error {
	f, err := os.Open(usr)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	cw := cpio.Newc.Writer(w)
	recs := []cpio.Record{
		cpio.Directory("pith", 0o755),
		{ReaderAt: f, Info: cpio.Info{Name: USRInitrdPath, Mode: cpio.S_IFREG | 0o400, FileSize: uint64(st.Size()), NLink: 1}},
	}
	for _, r := range recs {
		r = cpio.MakeReproducible(r)
		r.MTime = uint64(epoch)
		if err := cw.WriteRecord(r); err != nil {
			return err
		}
	}
	return cpio.WriteTrailer(cw)
}

const ipxeScript = `#!ipxe
# Pith {{.Version}} live over PXE: serve this script, {{.Kernel}} and {{.Initrd}}
# from one directory (TFTP or HTTP); paths are relative to the script's URL.
# Add pith.config.url=http://.../user-data to the kernel line for user-data.
# No second DHCP when the network is up: it would reset the base URL to
# tftp://<next-server>/ and so fetch a script chained over HTTP's files by TFTP.
isset ${ip} || dhcp
kernel {{.Kernel}} {{.Args}} initrd={{.Initrd}}
initrd {{.Initrd}}
boot
`

// PXE writes dir/pith-pxe.vmlinuz, dir/pith-pxe.initrd (the image's
// initramfs followed by the USR cpio: one file, as iPXE and most PXE
// loaders take one initrd best) and dir/pith-pxe.ipxe; with keys, the
// kernel's and initrd's .sig for pith-pxe.efi under Secure Boot.
func PXE(p *Parts, dir string, epoch int64, keys *secureboot.Keys) error {
	if err := atomicfile.CopyFile(p.Kernel, filepath.Join(dir, PXEKernelName), 0o644); err != nil {
		return err
	}
	if err := atomicfile.CopyFile(p.Initrd, filepath.Join(dir, PXEInitrdName), 0o644); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, PXEInitrdName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	// The kernel reads an archive after a compressed one only at a 4-byte
	// aligned offset (GRUB pads each initrd it loads the same way).
	st, err := f.Stat()
	if err == nil {
		_, err = f.Write(make([]byte, (4-st.Size()%4)%4))
	}
	if err == nil {
		err = writeUSRCpio(f, p.USR, epoch)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if keys != nil {
		for _, n := range []string{PXEKernelName, PXEInitrdName} {
			if err := keys.SignFileHash(filepath.Join(dir, n), time.Unix(epoch, 0), crypto.SHA512); err != nil {
				return err
			}
		}
	}
	var b bytes.Buffer
	t := template.Must(template.New("ipxe").Parse(ipxeScript))
	if err := t.Execute(&b, map[string]string{"Version": p.Version, "Kernel": PXEKernelName, "Initrd": PXEInitrdName, "Args": KernelArgs(p)}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, PXEScriptName), b.Bytes(), 0o644)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}
