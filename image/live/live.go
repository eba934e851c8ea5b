package live

import (
	"bytes"
	"context"
	"fmt"
	"github.com/pith-os/pith/atomicfile"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/u-root/mkuimage/cpio"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
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

var grubCfg = template.Must(template.New("grub.cfg").Parse(`# Pith {{.Version}} live: runs from RAM, /usr verified by dm-verity.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout={{.Timeout}}
set default=0
menuentry "Pith {{.Version}} live" {
  linux /pith/vmlinuz {{.Args}}
  initrd /pith/initrd /pith/usr.cpio
}
menuentry "Pith {{.Version}} live (pith.debug: shell on failure)" {
  linux /pith/vmlinuz {{.Args}} pith.debug
  initrd /pith/initrd /pith/usr.cpio
}
`))

// ISO writes the hybrid live ISO to out with grub-mkrescue (GRUB's
// i386-pc and x86_64-efi images, xorriso, mtools).
func ISO(ctx context.Context, p *Parts, out, work string, epoch int64) error {
	tree := filepath.Join(work, "iso")
	if err := os.MkdirAll(filepath.Join(tree, "boot", "grub"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(tree, "pith"), 0o755); err != nil {
		return err
	}
	var cfg bytes.Buffer
	if err := grubCfg.Execute(&cfg, map[string]any{"Version": p.Version, "Args": KernelArgs(p), "Timeout": 1}); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, "boot", "grub", "grub.cfg"), cfg.Bytes(), 0o644); err != nil {
		return err
	}
	for src, dst := range map[string]string{p.Kernel: "vmlinuz", p.Initrd: "initrd"} {
		if err := atomicfile.CopyFile(src, filepath.Join(tree, "pith", dst), 0o644); err != nil {
			return err
		}
	}
	c, err := os.Create(filepath.Join(tree, "pith", "usr.cpio"))
	if err != nil {
		return err
	}
	err = writeUSRCpio(c, p.USR, epoch)
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("USR cpio: %v", err)
	}
	cmd := exec.CommandContext(ctx, "grub-mkrescue", "-o", out, "--product-name=Pith", "--product-version="+p.Version, tree,
		"--", "-volid", isoVolumeLabel)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("grub-mkrescue: %v: %s (make deps installs xorriso, mtools, grub-pc-bin, grub-efi-amd64-bin)", err, lastLines(b, 3))
	}
	return nil
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
// loaders take one initrd best) and dir/pith-pxe.ipxe.
func PXE(p *Parts, dir string, epoch int64) error {
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
