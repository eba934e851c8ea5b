// Package bootloader makes Pith's boot chain from Debian's GRUB images
// without grub-install, loop devices or root: a BIOS core.img for the
// BIOS-BOOT partition plus the patched boot.img for the MBR, a UEFI
// BOOTX64.EFI, and the A/B grub.cfg read by both.
package bootloader

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/pith-os/pith/node"
)

// GrubLib is where Debian's grub-pc-bin and grub-efi-amd64-bin put their
// module directories (i386-pc, x86_64-efi).
var GrubLib = "/usr/lib/grub"

// modules are embedded into both GRUB images so nothing is loaded from the
// ESP at boot: reading GPT and FAT, finding the ESP, the A/B config
// (load_env/save_env, test), booting Linux, a serial console, and regexp,
// with which a Secure Boot image's grub.cfg checks the machine's kernel
// arguments, under BIOS too (a BIOS boot of that image reads the same
// grub.cfg).
var modules = []string{
	"part_gpt", "fat", "search", "search_fs_uuid", "search_label", "configfile", "normal",
	"linux", "loadenv", "test", "echo", "serial", "terminal", "ls", "cat", "reboot", "halt",
	"sleep", "gzio", "regexp",
}

var platformModules = map[string][]string{
	"i386-pc":    {"biosdisk"},
	"x86_64-efi": {"efi_gop", "efi_uga"},
	"arm64-efi":  {"efi_gop"},
}

// earlyConfig is embedded in the GRUB image: it finds the ESP by its FAT
// volume serial (unique per build, unlike the label) and points the prefix
// at its grub/ directory; GRUB's normal mode then reads grub/grub.cfg.
func earlyConfig(espUUID string) string {
	return fmt.Sprintf("search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/grub\n", espUUID)
}

// secureModules check detached OpenPGP signatures (pgp with RSA and the
// hashes GnuPG and Go sign with) and measure what GRUB loads into the TPM
// (tpm: files into PCR 9, commands and kernel lines into PCR 8).
var secureModules = []string{"pgp", "gcry_rsa", "gcry_sha256", "gcry_sha512", "tpm"}

// SecureConfig makes the UEFI image the Secure Boot one: PubKey is the
// OpenPGP public key embedded for check_signatures=enforce.
type SecureConfig struct{ PubKey string }

// Grub is a GRUB to make images with: Lib holds its <format>/ module
// directories, MkImage is its grub-mkimage (an image's modules and
// mkimage must be of one version). Empty fields are the host's (GrubLib,
// grub-mkimage on PATH). Version is Debian's, when fetched.
type Grub struct{ Lib, MkImage, Version string }

func mkimage(ctx context.Context, format, out, espUUID string, sec *SecureConfig) error {
	return mkimageFrom(ctx, Grub{}, format, out, espUUID, sec)
}

func mkimageFrom(ctx context.Context, g Grub, format, out, espUUID string, sec *SecureConfig) error {
	return mkimageWith(ctx, g, imageSpec{format: format, out: out, prefix: "/grub", early: earlyConfig(espUUID)}, sec)
}

// imageSpec is one GRUB image: its format and file, its prefix, the
// config embedded in it (early) and run before the prefix's grub.cfg,
// modules beyond the common ones, and a memdisk (a tar) when memdisk.
type imageSpec struct {
	format, out, prefix, early string
	extra                      []string
	memdisk                    string
}

// liveModules read live media: ISO 9660, and the MBR a hybrid ISO dd'ed
// to a USB stick has.
var liveModules = []string{"iso9660", "part_msdos"}

// MakeLive writes GRUB's image for live media made with g: format
// "i386-pc-eltorito" (BIOS, El Torito no-emulation) or "x86_64-efi"
// (BOOTX64.EFI on the media's EFI image). It finds the filesystem labelled
// label (the ISO's volume ID, also on a USB stick it was dd'ed to) and
// reads its /boot/grub/grub.cfg; every module is embedded, none is read
// from the media. With sec it enforces signatures as the disk's Secure
// Boot GRUB does.
func MakeLive(ctx context.Context, g Grub, format, out, label string, sec *SecureConfig) error {
	early := fmt.Sprintf("search --no-floppy --label --set=root %s\nset prefix=($root)/boot/grub\n", label)
	return mkimageWith(ctx, g, imageSpec{format: format, out: out, prefix: "/boot/grub", early: early, extra: liveModules}, sec)
}

// MakeNetboot writes a network GRUB (x86_64-efi) with g: its grub.cfg is
// in memdisk (a tar, with grub.cfg.sig for sec) under prefix, and modules
// are the network ones it needs. With sec it enforces signatures as the
// disk's Secure Boot GRUB does.
func MakeNetboot(ctx context.Context, g Grub, out, prefix, memdisk string, modules []string, sec *SecureConfig) error {
	return mkimageWith(ctx, g, imageSpec{format: "x86_64-efi", out: out, prefix: prefix, extra: modules, memdisk: memdisk}, sec)
}

func mkimageWith(ctx context.Context, g Grub, spec imageSpec, sec *SecureConfig) error {
	format, out, early := spec.format, spec.out, spec.early
	if g.Lib == "" {
		g.Lib = GrubLib
	}
	if g.MkImage == "" {
		g.MkImage = "grub-mkimage"
	}
	// An El Torito image is made from the i386-pc modules.
	platform, _ := strings.CutSuffix(format, "-eltorito")
	dir := filepath.Join(g.Lib, platform)
	if _, err := os.Stat(filepath.Join(dir, "kernel.img")); err != nil {
		pkg := map[string]string{"i386-pc": "grub-pc-bin", "x86_64-efi": "grub-efi-amd64-bin", "arm64-efi": "grub-efi-arm64-bin (pith build fetches it for arm64)"}[platform]
		return fmt.Errorf("GRUB %s images missing in %s: install %s (make deps)", platform, dir, pkg)
	}
	cfg := out + ".early.cfg"
	if sec != nil {
		// Set before anything is read from the ESP: from here on GRUB opens
		// no file as code or config without a good <file>.sig.
		// A superuser nobody can log in as: GRUB's command line and menu
		// editing (where a kernel line could be typed unsigned) are locked;
		// the menu entries are --unrestricted, so booting needs no login.
		early = "set check_signatures=enforce\nexport check_signatures\nset superusers=pith-locked\nexport superusers\n" + early
	}
	if err := os.WriteFile(cfg, []byte(early), 0o644); err != nil {
		return err
	}
	defer os.Remove(cfg)
	args := []string{"-O", format, "-d", dir, "-o", out, "-c", cfg, "-p", spec.prefix}
	if spec.memdisk != "" {
		args = append(args, "-m", spec.memdisk)
	}
	if sec != nil {
		// Without shim there is no shim_lock protocol: GRUB's shim_lock
		// verifier would refuse every kernel, so the pgp verifier checks it
		// (and, from GRUB 2.12, the firmware's LoadImage against db).
		args = append(args, "--disable-shim-lock", "--pubkey", sec.PubKey)
		args = append(args, secureModules...)
	}
	args = append(args, platformModules[platform]...)
	args = append(args, modules...)
	args = append(args, spec.extra...)
	cmd := exec.CommandContext(ctx, g.MkImage, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s -O %s: %v: %s", g.MkImage, format, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// MakeEFI writes GRUB's UEFI image (to be copied to EFI/BOOT/BOOTX64.EFI);
// with sec, the Secure Boot image that enforces signatures.
func MakeEFI(ctx context.Context, out, espUUID string, sec *SecureConfig) error {
	return mkimage(ctx, "x86_64-efi", out, espUUID, sec)
}

// MakeCore returns GRUB's BIOS core.img, patched to load itself from
// coreLBA (the first sector of the BIOS-BOOT partition).
func MakeCore(ctx context.Context, workDir, espUUID string, coreLBA uint64, maxSize int64) ([]byte, error) {
	out := filepath.Join(workDir, "core.img")
	if err := mkimage(ctx, "i386-pc", out, espUUID, nil); err != nil {
		return nil, err
	}
	core, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	if int64(len(core)) > maxSize {
		return nil, fmt.Errorf("GRUB core.img is %d bytes, more than BIOS-BOOT's %d", len(core), maxSize)
	}
	if err := PatchCore(core, coreLBA); err != nil {
		return nil, err
	}
	return core, nil
}

// Offsets in GRUB's i386-pc boot.img (include/grub/i386/pc/boot.h) and the
// blocklist at the end of diskboot.img, core.img's first sector.
const (
	sector          = 512
	bootKernelLBA   = 0x5c  // 8 bytes: LBA of core.img's first sector
	bootDriveCheck  = 0x66  // 2-byte jump taken for floppies
	bootCodeEnd     = 0x1b8 // disk signature and partition table follow
	blocklistOffset = sector - 12
)

// PatchCore fills in diskboot.img's blocklist: the rest of core.img is
// len(core)/512-1 sectors starting right after its first sector.
func PatchCore(core []byte, coreLBA uint64) error {
	if len(core) < 2*sector {
		return fmt.Errorf("core.img too small (%d bytes)", len(core))
	}
	n := (len(core) + sector - 1) / sector
	if n-1 > 0xffff {
		return fmt.Errorf("core.img too large (%d sectors)", n)
	}
	bl := core[blocklistOffset:sector]
	// grub-mkimage leaves the blocklist pointing at sector 2 (relative to a
	// raw install) with the length already filled in; only the start is ours.
	if start := binary.LittleEndian.Uint64(bl[0:8]); start != 2 {
		return fmt.Errorf("core.img blocklist already points at sector %d", start)
	}
	if l := int(binary.LittleEndian.Uint16(bl[8:10])); l != n-1 {
		return fmt.Errorf("core.img blocklist length %d does not match its %d sectors", l, n)
	}
	binary.LittleEndian.PutUint64(bl[0:8], coreLBA+1)
	// bl[10:12] is the load segment, already right in diskboot.img.
	return nil
}

// BootCode returns the first 440 bytes of the MBR: GRUB's boot.img with the
// LBA of core.img filled in and the floppy check disabled (as grub-install
// does for hard disks, since some BIOSes pass odd drive numbers). The rest
// of sector 0 (disk signature, protective MBR entry) stays the GPT writer's.
func BootCode(coreLBA uint64) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(GrubLib, "i386-pc", "boot.img"))
	if err != nil {
		return nil, fmt.Errorf("GRUB boot.img: %w (install grub-pc-bin: make deps)", err)
	}
	if len(b) != sector || b[510] != 0x55 || b[511] != 0xaa {
		return nil, fmt.Errorf("GRUB boot.img is not a 512-byte boot sector")
	}
	code := append([]byte(nil), b[:bootCodeEnd]...)
	// The BIOS parameter block area is kept zero, as on a blank disk.
	for i := 0x3; i < 0x5a; i++ {
		code[i] = 0
	}
	binary.LittleEndian.PutUint64(code[bootKernelLBA:], coreLBA)
	code[bootDriveCheck], code[bootDriveCheck+1] = 0x90, 0x90
	return code, nil
}

// Params are what grub.cfg needs to know about the disk.
type Params struct {
	Version  string
	Platform string
	Arch     string            // machine architecture; empty: amd64
	USR      map[string]string // slot ("a", "b") -> USR partition PARTUUID
	Root     string            // ROOT PARTUUID
	OEM      string            // OEM PARTUUID
	Extra    []string          // more kernel arguments (pith.debug, pith.verity=off)
	Timeout  int               // menu timeout in seconds
	// UsrHash is the dm-verity root hash of each slot's USR, as far as the
	// builder knows it (slot b is empty until an update writes it). It is
	// not part of grub.cfg, which reads it from VerityCfgPath per slot; it
	// makes KernelArgs the full command line a slot boots with.
	UsrHash map[string]string
	// SecureBoot makes the grub.cfg of a Secure Boot image: it takes the
	// per-machine kernel arguments (KargsFile) only when all of them are
	// on node.SecureBootKargs.
	SecureBoot bool
}

// kernelArgs is slot s's command line up to the root hash.
func kernelArgs(p Params, s string) []string {
	args := []string{
		"console=tty0", "console=" + SerialConsoleOn(p.Platform, p.Arch) + ",115200n8", "panic=10",
		"pith.slot=" + s,
		"pith.usr=PARTUUID=" + strings.ToLower(p.USR[s]),
		"pith.root=PARTUUID=" + strings.ToLower(p.Root),
		"pith.oem=PARTUUID=" + strings.ToLower(p.OEM),
		"pith.platform=" + p.Platform,
	}
	return append(args, p.Extra...)
}

// KernelArgs is the kernel command line of slot s (CONTRACT.md), ending in
// pith.usrhash= when the slot's root hash is known.
func KernelArgs(p Params, s string) string {
	args := kernelArgs(p, s)
	if h := p.UsrHash[s]; h != "" {
		args = append(args, "pith.usrhash="+h)
	}
	return strings.Join(args, " ")
}

// VerityCfgPath is where on the ESP slot s's root hash lives: a GRUB script
// the slot's menu entry sources, written with the slot's USR (by pith build
// for slot a, by the update agent after it verified the slot it wrote). Its
// absence means the slot holds no verified USR: GRUB does not fall back to
// it, and booting it anyway stops in the initramfs.
func VerityCfgPath(s string) string { return "pith/verity-" + s + ".cfg" }

var rootHashRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// VerityCfg is the content of VerityCfgPath for a root hash: a GRUB
// script, so the hash is checked here to be nothing but hex. It names no
// slot: under Secure Boot a release can carry it signed, for either slot.
func VerityCfg(rootHash string) ([]byte, error) {
	if !rootHashRe.MatchString(rootHash) {
		return nil, fmt.Errorf("dm-verity root hash %q: want 64 lowercase hex digits", rootHash)
	}
	return fmt.Appendf(nil, "# dm-verity root hash of this slot's USR, written with it\nset pith_usrhash=%s\n", rootHash), nil
}

// KargsFile (under GRUB's prefix, the ESP's grub/) and KargsVar are the
// machine's own kernel arguments: Ignition kernelArguments that pith-init
// wrote on first boot (node.KargsFile, node.KargsVar). A GRUB
// environment block, not a script: load_env takes KargsVar alone from it,
// so the file can add arguments and nothing else (no GRUB commands, no
// other variable such as pith_usrhash), and grub.cfg, the same for every
// machine of an image, stays the image's. One file for both slots, so
// the arguments survive A/B updates, which do not touch it.
//
// A Secure Boot image's grub.cfg takes the file only when every argument
// in it matches node.SecureBootKargs: the file is unsigned (pith-init
// writes it on the machine), and an argument it added (init=, a second
// pith.usrhash=) would boot what the signatures were to stop. A file with
// any other is ignored whole, with a console line; pith-init refuses such
// a config before it writes the file.
const (
	KargsFile = "kargs"
	KargsVar  = "pith_kargs"
)

var cfgTemplate = template.Must(template.New("grub.cfg").Parse(`# Pith {{.Version}} boot menu: one entry per USR slot (A/B).
# grubenv holds saved_entry (the good slot) and next_entry (a one-time
# trial): a trial is booted once and cleared before it runs, so a kernel
# that panics (panic=10) or is reset by a watchdog falls back to saved_entry.
{{- if .PCSerial}}
serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1
terminal_input console serial
terminal_output console serial
{{- else}}
# The firmware's console is the serial port here (arm64 UEFI has no PC UART).
{{- end}}
set timeout={{.Timeout}}
set timeout_style=menu

set default=a
# grubenv is kept in two copies (image/slot), each framed by pith_gen and
# pith_gen_end, equal in a whole copy: a copy torn by a power cut, or
# missing, does not count; the newer whole copy does, and every save_env
# goes to it. Images from before the copies have one block without them,
# which counts as it is.
set pith_env=grubenv
set pith_gen0=0
set pith_gen1=0
unset pith_gen
unset pith_gen_end
if load_env --skip-sig -f ${prefix}/grubenv pith_gen pith_gen_end; then
  if [ -n "${pith_gen}" -a "${pith_gen}" = "${pith_gen_end}" ]; then set pith_gen0="${pith_gen}"; fi
fi
unset pith_gen
unset pith_gen_end
if [ -f ${prefix}/grubenv.1 ]; then
  if load_env --skip-sig -f ${prefix}/grubenv.1 pith_gen pith_gen_end; then
    if [ -n "${pith_gen}" -a "${pith_gen}" = "${pith_gen_end}" ]; then set pith_gen1="${pith_gen}"; fi
  fi
fi
if [ "${pith_gen1}" -gt "${pith_gen0}" ]; then set pith_env=grubenv.1; fi
# Only the A/B variables: grubenv is unsigned (GRUB writes it), read with
# --skip-sig under Secure Boot, so nothing else in it may set GRUB's state
# (check_signatures, pith_usrhash...).
load_env --skip-sig -f ${prefix}/${pith_env} saved_entry next_entry pith_boot
if [ -n "${next_entry}" ]; then
  set default="${next_entry}"
  set next_entry=
  save_env -f ${prefix}/${pith_env} next_entry
elif [ -n "${saved_entry}" ]; then
  set default="${saved_entry}"
  # Boot counting of the good slot: pith_boot counts its boots that did
  # not reach userspace (pith-slot-settle.service clears it). A slot whose
  # USR fails dm-verity restarts the machine (restart_on_corruption); after
  # three such boots the other slot becomes the good one, if it holds a
  # verified USR (its pith/verity-<slot>.cfg exists). GRUB has no
  # arithmetic: the count is spelled out.
  if [ "${default}" = a ]; then set pith_other=b; else set pith_other=a; fi
  if [ "${pith_boot}" = "${default}3" ]; then
    if [ -f "/pith/verity-${pith_other}.cfg" ]; then
      echo "Pith slot ${default} failed to come up three times: falling back to slot ${pith_other}"
      set default="${pith_other}"
      set saved_entry="${pith_other}"
      set pith_boot="${pith_other}1"
    fi
  elif [ "${pith_boot}" = "${default}2" ]; then set pith_boot="${default}3"
  elif [ "${pith_boot}" = "${default}1" ]; then set pith_boot="${default}2"
  else set pith_boot="${default}1"
  fi
  save_env -f ${prefix}/${pith_env} saved_entry pith_boot
fi
# A slot whose kernel is missing or fails to load (B before its first
# update) falls back to the other entry. GRUB's fallback takes entry
# numbers only (a is 0, b is 1).
if [ "${default}" = b ]; then set fallback=0; else set fallback=1; fi
# The machine's own kernel arguments (Ignition kernelArguments, written by
# pith-init on first boot): only {{.KargsVar}} is taken from the file.
set {{.KargsVar}}=
if [ -f ${prefix}/{{.KargsFile}} ]; then
  load_env --skip-sig -f ${prefix}/{{.KargsFile}} {{.KargsVar}}
{{- if .SecureBoot}}
  # Secure Boot: the file is unsigned, so it counts only when every
  # argument in it is one the signed allowlist takes whole.
  set pith_karg_refused=
  for pith_karg in {{.KargsRef}}; do
    # (GRUB's if has no "!": the first branch only passes.)
    if regexp '{{.KargsAllowed}}' "${pith_karg}"; then
      set pith_karg=
    else
      set pith_karg_refused="${pith_karg}"
    fi
  done
  if [ -n "${pith_karg_refused}" ]; then
    echo "Pith: ignoring the machine's kernel arguments ({{.KargsFile}} on the ESP): ${pith_karg_refused} is not one a Secure Boot image takes"
    set {{.KargsVar}}=
  fi
{{- end}}
fi
{{range .Slots}}
menuentry "Pith slot {{.Upper}}" --id {{.ID}} --unrestricted {
  echo "Loading Pith slot {{.Upper}}..."
  set pith_usrhash=
  source /{{.VerityCfg}}
  linux /pith/vmlinuz-{{.ID}} {{.Args}} {{$.KargsRef}} pith.usrhash=${pith_usrhash}
  initrd /pith/initrd-{{.ID}}
}
{{end}}`))

// GrubCfg renders grub.cfg.
func GrubCfg(p Params) ([]byte, error) {
	type slotEntry struct{ ID, Upper, Args, VerityCfg string }
	data := struct {
		Params
		Slots                         []slotEntry
		KargsFile, KargsVar, KargsRef string
		KargsAllowed                  string // what a Secure Boot grub.cfg takes from KargsFile
		PCSerial                      bool   // GRUB's serial terminal on com0, the PC UART
	}{Params: p, KargsFile: KargsFile, KargsVar: KargsVar, KargsRef: "${" + KargsVar + "}", KargsAllowed: node.SecureBootKargs, PCSerial: HasBIOS(p.Arch)}
	for _, s := range []string{"a", "b"} {
		if p.USR[s] == "" {
			return nil, fmt.Errorf("grub.cfg: no PARTUUID for slot %s", s)
		}
		data.Slots = append(data.Slots, slotEntry{s, strings.ToUpper(s), strings.Join(kernelArgs(p, s), " "), VerityCfgPath(s)})
	}
	var b bytes.Buffer
	if err := cfgTemplate.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
