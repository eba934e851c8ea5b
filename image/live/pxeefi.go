package live

// The UEFI PXE boot file: UEFI firmware's PXE loads DHCP's boot file over
// TFTP and runs it as an EFI application, so it cannot take the iPXE
// script; pith-pxe.efi is GRUB's x86_64-efi image with its network stack
// and a config in a memdisk that loads pith-pxe.vmlinuz and
// pith-pxe.initrd with the script's kernel line.

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/pith-os/pith/image/bootloader"
)

// PXE names of the UEFI path.
const (
	PXEEFIName = "pith-pxe.efi"
	// PXEEFIOverride is optional, beside pith-pxe.efi: a GRUB script that
	// may set pith_pxe_base (where the kernel and initrd are, e.g. over
	// HTTP) and pith_pxe_args (more kernel arguments).
	PXEEFIOverride = "pith-pxe.cfg"
	// pxeEFIPrefix is GRUB's prefix: the memdisk, whose grub.cfg normal
	// mode reads (the embedded early config's rescue parser has no if).
	pxeEFIPrefix = "(memdisk)/boot/grub"
)

// pxeEFIModules: the memdisk and its tar, GRUB's script and commands the
// config uses (regexp and eval find the boot file's directory when
// $cmdpath is empty), the network (efinet binds the NIC's Simple Network
// Protocol and takes the PXE DHCP answer: server, boot file), TFTP and
// HTTP, Linux, a serial console and the EFI framebuffer.
var pxeEFIModules = []string{
	"memdisk", "tar", "normal", "configfile", "test", "echo", "regexp", "eval", "serial", "terminal", "sleep", "reboot", "halt", "ls", "cat",
	"net", "efinet", "tftp", "http", "linux", "efi_gop", "efi_uga",
}

// $cmdpath is where the firmware loaded pith-pxe.efi from, (tftp,SERVER)
// and the boot file's directory, in GRUB 2.06. GRUB 2.12 leaves it empty
// when the firmware's PXE is iPXE's (the UEFI ROMs of QEMU's NICs; other
// firmware not tried) but still sets the DHCP answer's server and boot
// file (net_default_server, net_IFACE_boot_file): the same place is made
// from those.
const pxeGrubCfg = `# Pith {{.Version}} live over UEFI PXE ({{.EFI}}): runs from RAM, /usr
# verified by dm-verity. Loads {{.Kernel}} and {{.Initrd}} from where
# {{.EFI}} came from (the PXE server's TFTP and the boot file's
# directory), or from pith_pxe_base when {{.Override}} there sets it:
#   set pith_pxe_base=(http,192.0.2.10)/pith
#   set pith_pxe_args="pith.config.url=http://192.0.2.10/user-data"
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set pith_pxe_from="$cmdpath"
if [ -z "$pith_pxe_from" -a -n "$net_default_server" ]; then
  eval "set pith_pxe_file=\"\$net_${net_default_interface}_boot_file\""
  set pith_pxe_from="(tftp,$net_default_server)"
  if regexp --set=1:pith_pxe_dir '^/*(.+)/[^/]*$' "$pith_pxe_file"; then
    set pith_pxe_from="$pith_pxe_from/$pith_pxe_dir"
  fi
fi
set pith_pxe_base="$pith_pxe_from"
set pith_pxe_args=""
if [ -s "$pith_pxe_from/{{.Override}}" ]; then
  source "$pith_pxe_from/{{.Override}}"
fi
echo "Pith {{.Version}} live: loading $pith_pxe_base/{{.Kernel}} and {{.Initrd}}"
linux "$pith_pxe_base/{{.Kernel}}" {{.Args}} $pith_pxe_args
initrd "$pith_pxe_base/{{.Initrd}}"
boot
echo "Pith live: could not boot from $pith_pxe_base (errors above)"
`

// PXEGrubCfg is pith-pxe.efi's config: the iPXE script's kernel line and
// files, relative to the boot file or to pith_pxe_base.
func PXEGrubCfg(p *Parts) ([]byte, error) {
	var b bytes.Buffer
	t := template.Must(template.New("grub.cfg").Parse(pxeGrubCfg))
	err := t.Execute(&b, map[string]string{"Version": p.Version, "EFI": PXEEFIName, "Override": PXEEFIOverride,
		"Kernel": PXEKernelName, "Initrd": PXEInitrdName, "Args": KernelArgs(p)})
	return b.Bytes(), err
}

// PXEEFI writes dir/pith-pxe.efi with g's grub-mkimage and x86_64-efi
// modules (the image's own GRUB, rootfs.LiveEFIGrub; a zero g is the
// build host's grub-efi-amd64-bin): a network GRUB whose memdisk holds
// PXEGrubCfg as boot/grub/grub.cfg. The memdisk's tar carries epoch as
// its time, so the same parts, GRUB and epoch give the same bytes.
func PXEEFI(ctx context.Context, p *Parts, g bootloader.Grub, dir, work string, epoch int64) error {
	lib := filepath.Join(cmp.Or(g.Lib, bootloader.GrubLib), "x86_64-efi")
	if _, err := os.Stat(filepath.Join(lib, "kernel.img")); err != nil {
		return fmt.Errorf("GRUB x86_64-efi images missing in %s: install grub-efi-amd64-bin (make deps)", lib)
	}
	cfg, err := PXEGrubCfg(p)
	if err != nil {
		return err
	}
	memdisk := filepath.Join(work, "pxe-memdisk.tar")
	if err := os.WriteFile(memdisk, memdiskTar(cfg, epoch), 0o644); err != nil {
		return err
	}
	args := append([]string{"-O", "x86_64-efi", "-d", lib, "-o", filepath.Join(dir, PXEEFIName), "-p", pxeEFIPrefix, "-m", memdisk}, pxeEFIModules...)
	if b, err := exec.CommandContext(ctx, cmp.Or(g.MkImage, "grub-mkimage"), args...).CombinedOutput(); err != nil {
		return fmt.Errorf("grub-mkimage %s: %v: %s", PXEEFIName, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// memdiskTar is the ustar archive of boot/grub/grub.cfg.
func memdiskTar(cfg []byte, epoch int64) []byte {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	mt := time.Unix(epoch, 0).UTC()
	for _, d := range []string{"boot/", "boot/grub/"} {
		// Writes to a bytes.Buffer cannot fail.
		_ = w.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt, Format: tar.FormatUSTAR})
	}
	_ = w.WriteHeader(&tar.Header{Name: "boot/grub/grub.cfg", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(cfg)), ModTime: mt, Format: tar.FormatUSTAR})
	_, _ = w.Write(cfg)
	_ = w.Close()
	return b.Bytes()
}
