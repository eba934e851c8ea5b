package live

// The UEFI PXE boot file: UEFI firmware's PXE loads DHCP's boot file over
// TFTP and runs it as an EFI application, so it cannot take the iPXE
// script; pith-pxe.efi is GRUB's x86_64-efi image with its network stack
// and a config in a memdisk that loads pith-pxe.vmlinuz and
// pith-pxe.initrd with the script's kernel line.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"text/template"
	"time"

	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/secureboot"
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
{{- if .Secure}}
  set pith_pxe_override=read
fi
# Under Secure Boot GRUB opens it only with a good {{.Override}}.sig: an
# unsigned one is as none.
if [ "$pith_pxe_override" != read ]; then
  echo "Pith live: no signed {{.Override}} beside {{.EFI}} (Secure Boot reads one only with a good {{.Override}}.sig: pith live sign)"
{{- end}}
fi
echo "Pith {{.Version}} live: loading $pith_pxe_base/{{.Kernel}} and {{.Initrd}}"
linux "$pith_pxe_base/{{.Kernel}}" {{.Args}} $pith_pxe_args
initrd "$pith_pxe_base/{{.Initrd}}"
boot
echo "Pith live: could not boot from $pith_pxe_base (errors above)"
`

// PXEGrubCfg is pith-pxe.efi's config: the iPXE script's kernel line and
// files, relative to the boot file or to pith_pxe_base; secure: for the
// Secure Boot GRUB, which reads an unsigned override not at all.
func PXEGrubCfg(p *Parts, secure bool) ([]byte, error) {
	var b bytes.Buffer
	t := template.Must(template.New("grub.cfg").Parse(pxeGrubCfg))
	err := t.Execute(&b, map[string]any{"Version": p.Version, "EFI": PXEEFIName, "Override": PXEEFIOverride,
		"Kernel": PXEKernelName, "Initrd": PXEInitrdName, "Args": KernelArgs(p), "Secure": secure})
	return b.Bytes(), err
}

// PXEEFI writes dir/pith-pxe.efi with g's grub-mkimage and x86_64-efi
// modules (the image's own GRUB, rootfs.LiveEFIGrub; a zero g is the
// build host's grub-efi-amd64-bin): a network GRUB whose memdisk holds
// PXEGrubCfg as boot/grub/grub.cfg. With keys it is signed for Secure
// Boot as pith.iso's GRUB is (db; grub.cfg.sig in the memdisk, GRUB's key
// embedded and enforced), and PXE has signed the kernel and initrd. The
// memdisk's tar carries epoch as its time, so the same parts, GRUB, keys
// and epoch give the same bytes.
func PXEEFI(ctx context.Context, p *Parts, g bootloader.Grub, dir, work string, epoch int64, keys *secureboot.Keys) error {
	cfg, err := PXEGrubCfg(p, keys != nil)
	if err != nil {
		return err
	}
	files := map[string][]byte{"boot/grub/grub.cfg": cfg}
	var sec *bootloader.SecureConfig
	if keys != nil {
		c := filepath.Join(work, "pxe-grub.cfg")
		if err := os.WriteFile(c, cfg, 0o644); err != nil {
			return err
		}
		if err := keys.SignFileHash(c, time.Unix(epoch, 0), crypto.SHA512); err != nil {
			return err
		}
		sig, err := os.ReadFile(c + secureboot.SigSuffix)
		if err != nil {
			return err
		}
		files["boot/grub/grub.cfg"+secureboot.SigSuffix] = sig
		sec = &bootloader.SecureConfig{PubKey: keys.GrubPub()}
	}
	memdisk := filepath.Join(work, "pxe-memdisk.tar")
	if err := os.WriteFile(memdisk, memdiskTar(files, epoch), 0o644); err != nil {
		return err
	}
	efi := filepath.Join(dir, PXEEFIName)
	if keys != nil {
		efi = filepath.Join(work, PXEEFIName+".unsigned")
	}
	if err := bootloader.MakeNetboot(ctx, g, efi, pxeEFIPrefix, memdisk, pxeEFIModules, sec); err != nil {
		return err
	}
	if keys != nil {
		return keys.SignEFI(ctx, efi, filepath.Join(dir, PXEEFIName), time.Unix(epoch, 0))
	}
	return nil
}

// memdiskTar is the ustar archive of files (boot/grub/...), in name order.
func memdiskTar(files map[string][]byte, epoch int64) []byte {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	mt := time.Unix(epoch, 0).UTC()
	for _, d := range []string{"boot/", "boot/grub/"} {
		// Writes to a bytes.Buffer cannot fail.
		_ = w.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt, Format: tar.FormatUSTAR})
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		_ = w.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[name])), ModTime: mt, Format: tar.FormatUSTAR})
		_, _ = w.Write(files[name])
	}
	_ = w.Close()
	return b.Bytes()
}
