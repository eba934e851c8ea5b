package apply

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
)

// noticeInitramfsSource logs, on first boot, when the initramfs applied
// kernel arguments or storage from another config than userData, the one
// this stage got from source (node.IgnitionSourceMarker): a datasource the
// initramfs does not read (DigitalOcean's metadata, pith.config.url: they
// need pithd's network) came before the one it read, or a source both
// read (ignition.config.url, EC2's metadata service) answered each
// another config.
// Both are named, so an operator knows which config laid out the disks
// and which one the rest comes from.
func noticeInitramfsSource(root, source string, userData []byte, log *slog.Logger) {
	b, err := os.ReadFile(filepath.Join(root, node.IgnitionSourceMarker))
	if err != nil {
		return
	}
	initSource, initSum, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	raw, err := cloudconfig.Decompress(userData)
	if err != nil {
		raw = userData
	}
	sum := sha256.Sum256(raw)
	if initSum == hex.EncodeToString(sum[:]) {
		return
	}
	if initSource == source {
		// A source both read (ignition.config.url, EC2's service): its
		// answer changed.
		log.Warn("first boot: the initramfs applied the kernel arguments and storage of the Ignition config from "+initSource+
			", but "+source+" answered pithd a different config: the disks and kernel line stay as the initramfs's fetch made them; the later answer's own storage and kernelArguments cannot be applied after boot",
			"initramfs_source", initSource, "source", source)
		return
	}
	log.Warn("first boot: the initramfs applied the kernel arguments and storage of the Ignition config from "+initSource+
		", but pithd took its user-data from "+source+", a different config ("+source+" comes first in pithd's order and the initramfs did not read it):"+
		" the disks and kernel line stay as "+initSource+"'s config made them; "+source+"'s own storage and kernelArguments cannot be applied after boot",
		"initramfs_source", initSource, "source", source)
}

// initramfsSources says, in the refusal of storage or kernelArguments the
// initramfs did not apply, where it reads them and why this config, from
// pithd's source, missed them: on EC2 the initramfs reads the metadata
// service too, so an EC2 config missed it because the service did not
// answer in time, or because the kernel line does not name the platform;
// an ignition.config.url it reads always, so its answer changed.
func initramfsSources(source string) string {
	const from = "the initramfs applies them on first boot from ignition.config.url on the kernel line, else QEMU fw_cfg user-data, a config drive, the OEM partition's config.ign (pith install) or, with pith.platform=ec2 on the kernel line, EC2's metadata service"
	switch source {
	case "ec2":
		return from + ", and this config came from ec2, which the initramfs did not reach (no DHCP lease or no answer within its wait: see the boot's console) or did not try (no pith.platform=ec2)"
	case "ignition-url":
		return from + ", and this config came from ignition-url, which answered the initramfs another config (or none) than it answered pithd"
	}
	return from + ", and this config came from " + source + " (pith.config.url or DigitalOcean's metadata service needs pithd's network)"
}
