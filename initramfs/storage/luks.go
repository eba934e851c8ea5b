package storage

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/pith-os/pith/cloudconfig"
)

// Where the volumes' keys and crypttab go, relative to Root.
const (
	// KeyDir keeps the key of a volume no TPM unlocks
	// (<name>.key, 0400), for systemd-cryptsetup on every boot.
	KeyDir = "etc/pith/luks"
	// TempKeyDir is on a tmpfs (the init binds its /run over Root's):
	// a TPM-bound volume's key never reaches a disk.
	TempKeyDir = "run/pith-storage"
	Crypttab   = "etc/crypttab"
)

// TPM2PCRs are the PCRs a volume's TPM2 key is sealed to: 7 is the
// Secure Boot policy (the firmware's db/dbx and the Secure Boot state),
// which an A/B update does not change, unlike the kernel and initramfs
// measured into 4, 8 and 9.
const TPM2PCRs = "7"

// makeVolumes formats (or reuses) and opens the plan's LUKS2 volumes and
// writes their crypttab lines into ROOT.
func makeVolumes(vols []Luks, env Env) error {
	if len(vols) == 0 {
		return nil
	}
	if err := loadModules(env.Run, "dm_crypt", "xts"); err != nil {
		return fmt.Errorf("storage.luks: %w", err)
	}
	// Faster, but optional: cryptsetup falls back to dm-crypt without the
	// kernel's crypto API for user space, and aes-generic is built in.
	if out, err := env.Run.Run("modprobe", "-a", "-q", "algif_skcipher", "aesni_intel"); err != nil {
		env.log().Warn("optional crypto modules not loaded", "error", err.Error(), "output", lastLine(string(out)))
	}
	var tab []string
	for _, v := range vols {
		line, err := makeVolume(v, env)
		if err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if !v.Root {
			// pith-init opens ROOT's volume itself, before systemd.
			tab = append(tab, line)
		}
	}
	if len(tab) == 0 {
		return nil
	}
	return writeCrypttab(env.Root, tab)
}

// tpmToken opens a volume through its systemd-tpm2 token alone (the
// token plugin, libcryptsetup-token-systemd-tpm2.so, is systemd's).
var tpmToken = []string{"--token-only", "--token-type", "systemd-tpm2"}

// OpenRoot opens ROOT's volume on dev (an encrypted ROOT, made by Apply
// on first boot) as /dev/mapper/<name> through the TPM alone, on every
// later boot before ROOT is mounted. The flags first boot stored in the
// header (--persistent: discard, the openOptions) apply.
func OpenRoot(r Runner, dev, name string) error {
	if err := loadModules(r, "dm_crypt", "xts"); err != nil {
		return err
	}
	return cryptsetup(r, append([]string{"luksOpen", dev, name}, tpmToken...)...)
}

// cryptsetup runs it with the first and last lines of its output in the
// error.
func cryptsetup(r Runner, args ...string) error {
	if out, err := r.Run("cryptsetup", args...); err != nil {
		return fmt.Errorf("cryptsetup %s: %v: %s", args[0], err, firstAndLastLine(string(out)))
	}
	return nil
}

// makeVolume sets up one volume and returns its crypttab line. As
// Ignition: a blank device is formatted; with wipeVolume anything on it
// is wiped first; an existing LUKS2 volume is reused (opened) only with
// a keyFile and without the TPM, whose binding cannot be compared;
// anything else is an error. A generated key is removed once the TPM
// has opened the volume; a given keyFile stays enrolled as the way in
// when the TPM's PCR 7 changes.
func makeVolume(v Luks, env Env) (string, error) {
	dev, err := env.volumeDevice(v)
	if err != nil {
		return "", err
	}
	found, err := probe(env.Run, dev)
	if err != nil {
		return "", fmt.Errorf("%s: %w", v.Device, err)
	}
	key, generated := v.Key, v.Key == nil
	if generated {
		key = newKey()
	}
	keyPath := "/" + KeyDir + "/" + v.Name + ".key"
	if v.TPM2 {
		keyPath = "/" + TempKeyDir + "/" + v.Name + ".key"
		defer os.Remove(filepath.Join(env.Root, keyPath))
	}
	if err := writeKey(filepath.Join(env.Root, keyPath), key); err != nil {
		return "", err
	}
	run := func(args ...string) error { return cryptsetup(env.Run, args...) }
	switch {
	case v.Wipe && holds(found) != "":
		if out, err := env.Run.Run("wipefs", "-a", dev); err != nil {
			return "", fmt.Errorf("%s: wipefs -a: %v: %s", v.Device, err, lastLine(string(out)))
		}
	case found.Type == "crypto_LUKS":
		if err := reuseVolume(v, found, dev, keyPath, generated, run); err != nil {
			return "", err
		}
		env.log().Info("LUKS volume kept", "device", v.Device, "name", v.Name, "uuid", found.UUID)
		return crypttabLine(v, found.UUID, keyPath), nil
	case holds(found) != "":
		return "", fmt.Errorf("%s holds %s; set wipeVolume to replace it", v.Device, holds(found))
	}
	args := []string{"luksFormat", "--type", "luks2", "--batch-mode", "--key-file", keyPath}
	if generated {
		// 512 random bits need no key stretching: cryptsetup's default
		// argon2id takes up to half the RAM and, under TCG, most of a
		// minute. A keyFile may be a passphrase: it keeps the default.
		args = append(args, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
	}
	if v.Label != "" {
		args = append(args, "--label", v.Label)
	}
	if v.UUID != "" {
		args = append(args, "--uuid", v.UUID)
	}
	if v.Root {
		// What later boots open it as, before any file can be read.
		args = append(args, "--subsystem", cloudconfig.RootSubsystem(v.Name))
	}
	args = append(append(args, v.Options...), dev)
	if err := run(args...); err != nil {
		return "", err
	}
	if v.TPM2 {
		if err := bindTPM(v, env, dev, keyPath, generated, run); err != nil {
			return "", err
		}
	} else if err := run(openArgs(v, dev, "--key-file", keyPath)...); err != nil {
		return "", err
	}
	found, err = probe(env.Run, dev)
	if err != nil || found.Type != "crypto_LUKS" || found.UUID == "" {
		return "", fmt.Errorf("%s: after luksFormat blkid finds %q (uuid %q): %v", v.Device, found.Type, found.UUID, err)
	}
	env.log().Info("LUKS volume made", "device", v.Device, "name", v.Name, "uuid", found.UUID, "tpm2", v.TPM2, "key", keyKind(v, generated))
	return crypttabLine(v, found.UUID, keyPath), nil
}

// volumeDevice resolves a volume's device: ROOT's partition for the
// volume on ROOT (the one device on the boot disk a config may use), any
// other through env.device.
func (env Env) volumeDevice(v Luks) (string, error) {
	if !v.Root {
		return env.device(v.Device)
	}
	if env.RootDevice == "" {
		return "", fmt.Errorf("%s: the boot's ROOT partition is unknown", v.Device)
	}
	return env.RootDevice, nil
}

// closeVolumes closes the volumes once their filesystems are made. The
// real root's systemd-cryptsetup opens them again from crypttab (with
// the TPM or the kept key, proving that path on first boot): a device
// mapper device left open here, made without udev, would carry no udev
// flags, and udev's device-mapper rules would give it no
// /dev/disk/by-uuid link for the mount units. ROOT's stays open: the
// init mounts it as the root, which nothing names by UUID.
func closeVolumes(vols []Luks, env Env) error {
	for _, v := range vols {
		if v.Root {
			continue
		}
		if out, err := env.Run.Run("cryptsetup", "luksClose", v.Name); err != nil {
			return fmt.Errorf("volume %s: cryptsetup luksClose: %v: %s", v.Name, err, lastLine(string(out)))
		}
		env.log().Info("LUKS volume closed, systemd-cryptsetup opens it from /etc/crypttab", "name", v.Name)
	}
	return nil
}

// bindTPM enrolls the TPM2 (sealed to TPM2PCRs) with the key, opens the
// volume through the TPM alone, proving the binding before anything
// depends on it, and then removes a generated key.
func bindTPM(v Luks, env Env, dev, keyPath string, generated bool, run func(...string) error) error {
	args := []string{"--unlock-key-file=" + keyPath, "--tpm2-device=auto", "--tpm2-pcrs=" + TPM2PCRs, dev}
	if out, err := env.Run.Run("systemd-cryptenroll", args...); err != nil {
		return fmt.Errorf("systemd-cryptenroll --tpm2-device=auto: %v: %s (is there a TPM 2.0, and the libtss2 packages in the image?)", err, firstAndLastLine(string(out)))
	}
	if err := run(openArgs(v, dev, tpmToken...)...); err != nil {
		return fmt.Errorf("opening through the TPM just enrolled: %w", err)
	}
	if generated {
		return run("luksRemoveKey", "--batch-mode", dev, keyPath)
	}
	return nil
}

// reuseVolume opens an existing LUKS2 volume with the config's keyFile
// after checking what the config says of it.
func reuseVolume(v Luks, found Found, dev, keyPath string, generated bool, run func(...string) error) error {
	switch {
	case generated || v.TPM2:
		return fmt.Errorf("%s holds a LUKS volume, reused only with a keyFile and without clevis (as Ignition); set wipeVolume to replace it", v.Device)
	case v.Label != "" && v.Label != found.Label:
		return fmt.Errorf("%s holds a LUKS volume labelled %q, not %q; set wipeVolume to replace it", v.Device, found.Label, v.Label)
	case v.UUID != "" && !strings.EqualFold(v.UUID, found.UUID):
		return fmt.Errorf("%s holds a LUKS volume with UUID %s, not %s; set wipeVolume to replace it", v.Device, found.UUID, v.UUID)
	}
	if err := run("isLuks", "--type", "luks2", dev); err != nil {
		return fmt.Errorf("%s holds a LUKS volume that is not LUKS2 (%v); set wipeVolume to replace it", v.Device, err)
	}
	if err := run(openArgs(v, dev, "--key-file", keyPath)...); err != nil {
		return fmt.Errorf("%s holds a LUKS volume the keyFile does not open (%v); set wipeVolume to replace it", v.Device, err)
	}
	return nil
}

// openArgs opens the volume as /dev/mapper/<name> with the given key
// arguments. --persistent stores discard and the openOptions' flags in
// the LUKS2 header, so systemd-cryptsetup uses them on every boot.
func openArgs(v Luks, dev string, key ...string) []string {
	args := append([]string{"luksOpen", dev, v.Name}, key...)
	args = append(args, "--persistent")
	if v.Discard {
		args = append(args, "--allow-discards")
	}
	return append(args, v.OpenOptions...)
}

// crypttabLine is the volume's /etc/crypttab line: by the LUKS UUID (the
// device's name may change), the kept key file or none for the TPM.
func crypttabLine(v Luks, uuid, keyPath string) string {
	key, opts := keyPath, "luks"
	if v.TPM2 {
		key, opts = "none", opts+",tpm2-device=auto"
	}
	if v.Discard {
		opts += ",discard"
	}
	return fmt.Sprintf("%s UUID=%s %s %s", v.Name, uuid, key, opts)
}

// writeCrypttab appends the lines to ROOT's /etc/crypttab.
func writeCrypttab(root string, lines []string) error {
	return appendLines(filepath.Join(root, Crypttab), "Ignition storage.luks", lines)
}

// writeKey writes a key readable by root alone, in a directory only root
// can list.
func writeKey(p string, key []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return writeFile(p, key, 0o400)
}

// newKey is a random key as Ignition makes one: hex text (512 bits of
// entropy), so it can also be typed or pasted as a passphrase.
func newKey() []byte {
	b := make([]byte, 64)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24)
	return []byte(hex.EncodeToString(b))
}

func keyKind(v Luks, generated bool) string {
	switch {
	case v.TPM2 && generated:
		return "TPM2 only"
	case v.TPM2:
		return "TPM2 and the keyFile"
	case generated:
		return "generated, " + "/" + KeyDir + "/" + v.Name + ".key"
	}
	return "keyFile, " + "/" + KeyDir + "/" + v.Name + ".key"
}

// cryptsetupUnit is the systemd-cryptsetup service that opens the volume
// a filesystem device names (/dev/mapper/<name> or dm-name-<name>), or "".
func cryptsetupUnit(dev string) string {
	name, ok := strings.CutPrefix(dev, "/dev/mapper/")
	if !ok {
		name, ok = strings.CutPrefix(dev, cloudconfig.LuksDMNamePrefix)
	}
	if !ok {
		return ""
	}
	return "systemd-cryptsetup@" + unit.UnitNameEscape(name) + ".service"
}
