package cloudconfig

import (
	"fmt"
	"regexp"
	"strings"
)

// The device names the initramfs resolves (it has no udev, so no other
// /dev/disk/ links exist there): checked here, once, for pith validate
// and the init alike.
var (
	guidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
	// A kernel partition name: vdb2, sda1, xvdb1, nvme0n1p2, mmcblk0p1.
	kernelPartRE = regexp.MustCompile(`^((s|v|xv|h)d[a-z]+[0-9]+|(nvme[0-9]+n[0-9]+|mmcblk[0-9]+|loop[0-9]+)p[0-9]+)$`)
	byIDPartRE   = regexp.MustCompile(`-part[1-9][0-9]*$`)
)

// StorageDeviceForms says which device names Pith resolves.
const StorageDeviceForms = "/dev/<kernel name>, /dev/disk/by-id/virtio-<serial>[-part<n>], /dev/disk/by-partlabel/<label> or /dev/disk/by-partuuid/<guid>"

// checkStorageDevice refuses a device name the initramfs cannot resolve
// and, for a storage.disks entry (disk), one that names a partition.
func checkStorageDevice(dev string, disk bool) error {
	if !strings.HasPrefix(dev, "/dev/") {
		return fmt.Errorf("%q is not a /dev path", dev)
	}
	part := false
	switch rest := strings.TrimPrefix(dev, "/dev/disk/"); {
	case strings.HasPrefix(dev, "/dev/disk/by-partlabel/"):
		if l := strings.TrimPrefix(rest, "by-partlabel/"); l == "" || strings.Contains(l, "/") {
			return fmt.Errorf("%q names no partition label", dev)
		}
		part = true
	case strings.HasPrefix(dev, "/dev/disk/by-partuuid/"):
		if !guidRE.MatchString(strings.TrimPrefix(rest, "by-partuuid/")) {
			return fmt.Errorf("%q: not a GUID after by-partuuid/ (want 8-4-4-4-12 hex digits)", dev)
		}
		part = true
	case strings.HasPrefix(dev, "/dev/disk/by-id/virtio-"):
		id := strings.TrimPrefix(rest, "by-id/virtio-")
		if id == "" || strings.Contains(id, "/") {
			return fmt.Errorf("%q names no virtio serial", dev)
		}
		part = byIDPartRE.MatchString(id)
	case strings.HasPrefix(dev, "/dev/disk/"):
		return fmt.Errorf("%q: the initramfs has no udev links; name a device as %s", dev, StorageDeviceForms)
	default:
		part = kernelPartRE.MatchString(strings.TrimPrefix(dev, "/dev/"))
	}
	if disk && part {
		return fmt.Errorf("%s is a partition, not a disk", dev)
	}
	return nil
}
