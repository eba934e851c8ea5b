package cloudconfig

import "testing"

// The storage sections the initramfs applies are valid; what it cannot
// apply is an error at its line:col, in pith validate as on the console.
func TestIgnitionStorage(t *testing.T) {
	const v = `{"ignition":{"version":"3.4.0"},"storage":`
	for _, tc := range []struct {
		name string
		in   string
		want []want
	}{
		{"data disk", v + `{"disks":[{"device":"/dev/vdb","wipeTable":true,"partitions":[{"label":"data","sizeMiB":0}]}],"filesystems":[{"device":"/dev/disk/by-partlabel/data","format":"ext4","path":"/var/lib/docker","label":"data"}]}}`, nil},
		{"swap", v + `{"filesystems":[{"device":"/dev/vdc","format":"swap"}]}}`, nil},
		{"raid", v + `{"raid":[{"name":"md0","level":"raid1","devices":["/dev/vdb","/dev/vdc"]}]}}`, []want{{1, 52, E, "storage.raid: Pith does not build RAID arrays yet"}}},
		{"luks", v + `{"luks":[{"name":"data","device":"/dev/vdb"}]}}`, []want{{1, 52, E, "storage.luks: Pith does not set up LUKS"}}},
		{"btrfs", v + `{"filesystems":[{"device":"/dev/vdb","format":"btrfs","path":"/srv"}]}}`, []want{{1, 89, E, `not "btrfs"`}}},
		{"mount over /var", v + `{"filesystems":[{"device":"/dev/vdb","format":"ext4","path":"/var"}]}}`, []want{{1, 103, E, "/var is part of the OS"}}},
		{"swap with a path", v + `{"filesystems":[{"device":"/dev/vdb","format":"swap","path":"/srv"}]}}`, []want{{1, 103, E, "swap area has no mount path"}}},
		{"resize", v + `{"disks":[{"device":"/dev/vdb","partitions":[{"number":1,"resize":true}]}]}}`, []want{{1, 109, E, "does not resize"}}},
		{"xfs and vfat with labels and ids", v + `{"filesystems":[{"device":"/dev/vdb","format":"xfs","label":"abcdefghijkl","uuid":"2F1D5E3A-6C1E-4C3B-9A0E-0D0F2D9B1C11"},{"device":"/dev/vdc","format":"vfat","label":"Efi Sys~#!","uuid":"abcd1234"},{"device":"/dev/vdd","format":"vfat","uuid":"ABCD-1234"}]}}`, nil},
		// Ignition's own checks: the length of a label, per format.
		{"xfs label too long", v + `{"filesystems":[{"device":"/dev/vdb","format":"xfs","label":"abcdefghijklm"}]}}`, []want{{1, 103, E, "longer than 12 characters when using xfs"}}},
		{"vfat label too long", v + `{"filesystems":[{"device":"/dev/vdb","format":"vfat","label":"ABCDEFGHIJKL"}]}}`, []want{{1, 104, E, "longer than 11 characters when using vfat"}}},
		// Pith's: what mkfs.fat and mkfs.xfs refuse and Ignition lets through.
		{"vfat label with a dot", v + `{"filesystems":[{"device":"/dev/vdb","format":"vfat","label":"A.B"}]}}`, []want{{1, 104, E, `vfat label "A.B": mkfs.fat takes printable ASCII without`}}},
		{"vfat label not ASCII", v + `{"filesystems":[{"device":"/dev/vdb","format":"vfat","label":"ÉTÉ"}]}}`, []want{{1, 104, E, `vfat label "ÉTÉ"`}}},
		{"vfat uuid a full UUID", v + `{"filesystems":[{"device":"/dev/vdb","format":"vfat","uuid":"2f1d5e3a-6c1e-4c3b-9a0e-0d0f2d9b1c11"}]}}`, []want{{1, 103, E, "is not a 32-bit volume id like ABCD-1234"}}},
		{"vfat uuid too short", v + `{"filesystems":[{"device":"/dev/vdb","format":"vfat","uuid":"1234"}]}}`, []want{{1, 103, E, "is not a 32-bit volume id"}}},
		{"xfs uuid a volume id", v + `{"filesystems":[{"device":"/dev/vdb","format":"xfs","uuid":"ABCD-1234"}]}}`, []want{{1, 102, E, `xfs uuid "ABCD-1234" is not a UUID`}}},
		{"same path twice", v + `{"filesystems":[{"device":"/dev/vdb","format":"ext4","path":"/srv"},{"device":"/dev/vdc","format":"ext4","path":"/srv"}]}}`, []want{{1, 155, E, "/srv is mounted twice"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkReport(t, Validate([]byte(tc.in)), tc.want)
		})
	}
}
