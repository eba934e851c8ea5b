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
		{"same path twice", v + `{"filesystems":[{"device":"/dev/vdb","format":"ext4","path":"/srv"},{"device":"/dev/vdc","format":"ext4","path":"/srv"}]}}`, []want{{1, 155, E, "/srv is mounted twice"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkReport(t, Validate([]byte(tc.in)), tc.want)
		})
	}
}
