// Package storage applies an Ignition config's storage.disks, raid,
// luks and filesystems in the initramfs, on first boot, before the
// switch to the real root, as Ignition's disks stage does on Fedora
// CoreOS and Flatcar, in its order: partitions are created on the named
// disks (GPT, in Go through go-diskfs), md arrays built (mdadm), LUKS2
// volumes formatted and opened (cryptsetup; a TPM2 bound with
// systemd-cryptenroll), filesystems made, every tool the slot's verified
// USR's, and for later boots ROOT gets mdadm.conf's ARRAY lines,
// crypttab lines (systemd-cryptsetup unlocks with the kept key file or
// the TPM) and a mount (or swap) unit for every filesystem with a path,
// so systemd mounts it on every boot before the first-boot stage writes
// storage.files (which then land on it).
//
// It fails closed: the first error stops; the caller stops the boot. A
// device on the boot disk is refused (Env.BootDisks), a disk without a
// readable table is partitioned only when blank or with wipeTable, an
// array is built on blank members only, a volume formatted only on a
// blank device or with wipeVolume, and a device holding a filesystem or
// a partition table is formatted only when it matches or with
// wipeFilesystem. What is accepted (device name forms included) is
// decided by cloudconfig.IgnitionStoragePlan, which pith validate uses
// too. A partition's resize grows its GPT entry only, as Ignition's:
// the filesystem on it keeps its size (grow it from the booted system).
package storage

import (
	"sort"

	"github.com/pith-os/pith/cloudconfig"
)

// The plan's types are cloudconfig's: config -> plan is validation.
type (
	Plan       = cloudconfig.StoragePlan
	Disk       = cloudconfig.StorageDisk
	Partition  = cloudconfig.StoragePartition
	Filesystem = cloudconfig.StorageFilesystem
	Raid       = cloudconfig.StorageRaid
	Luks       = cloudconfig.StorageLuks
	Problem    = cloudconfig.StorageProblem
)

// FromConfig checks what Pith can apply and returns the plan.
func FromConfig(cfg *cloudconfig.IgnitionConfig) (*Plan, error) {
	return cloudconfig.IgnitionStoragePlan(cfg)
}

// sortedNumbers returns the keys of m in order.
func sortedNumbers[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}
