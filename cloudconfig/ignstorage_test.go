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
		{"raid1, luks with tpm2 on it, ext4 on that", v + `{"raid":[{"name":"data","level":"raid1","devices":["/dev/disk/by-id/virtio-pith-extra-1","/dev/disk/by-id/virtio-pith-extra-2"]}],"luks":[{"name":"data","device":"/dev/md/data","clevis":{"tpm2":true},"discard":true}],"filesystems":[{"device":"/dev/mapper/data","format":"ext4","path":"/var/lib/docker"}]}}`, nil},
		{"luks with a data: key on a partition of this config, fs by dm-name", v + `{"disks":[{"device":"/dev/vdb","partitions":[{"label":"crypt"}]}],"luks":[{"name":"c","device":"/dev/disk/by-partlabel/crypt","keyFile":{"source":"data:,s3cret"},"label":"c","uuid":"2f1d5e3a-6c1e-4c3b-9a0e-0d0f2d9b1c11"}],"filesystems":[{"device":"/dev/disk/by-id/dm-name-c","format":"xfs","path":"/srv"}]}}`, nil},
		{"raid5 with a spare, raid10", v + `{"raid":[{"name":"r5","level":"raid5","devices":["/dev/vdb","/dev/vdc","/dev/vdd","/dev/vde"],"spares":1,"options":["--chunk=256"]},{"name":"r10","level":"10","devices":["/dev/vdf","/dev/vdg"]}]}}`, nil},
		{"raid level Ignition refuses", v + `{"raid":[{"name":"md0","level":"raid7","devices":["/dev/vdb","/dev/vdc"]}]}}`, []want{{1, 74, E, "unrecognized raid level"}}},
		{"raid1 of one device", v + `{"raid":[{"name":"md0","level":"raid1","devices":["/dev/vdb"]}]}}`, []want{{1, 93, E, "raid1 needs at least 2 devices besides the 0 spares, not 1"}}},
		{"raid6 of three", v + `{"raid":[{"name":"md0","level":"raid6","devices":["/dev/vdb","/dev/vdc","/dev/vdd"]}]}}`, []want{{1, 93, E, "raid6 needs at least 4 devices"}}},
		{"raid name with a slash", v + `{"raid":[{"name":"a/b","level":"raid1","devices":["/dev/vdb","/dev/vdc"]}]}}`, []want{{1, 60, E, `array name "a/b"`}}},
		{"raid option Pith sets", v + `{"raid":[{"name":"md0","level":"raid1","devices":["/dev/vdb","/dev/vdc"],"options":["--metadata=0.90"]}]}}`, []want{{1, 127, E, "--metadata is set by Pith"}}},
		{"raid member in two arrays", v + `{"raid":[{"name":"a","level":"raid1","devices":["/dev/vdb","/dev/vdc"]},{"name":"b","level":"raid1","devices":["/dev/vdb","/dev/vdd"]}]}}`, []want{{1, 154, E, "/dev/vdb is already used by array a"}}},
		{"array member partitioned too", v + `{"disks":[{"device":"/dev/vdb","partitions":[{"label":"x"}]}],"raid":[{"name":"a","level":"raid1","devices":["/dev/vdb","/dev/vdc"]}]}}`, []want{{1, 152, E, "/dev/vdb is partitioned by storage.disks: use one of its partitions"}}},
		{"luks on an array member", v + `{"raid":[{"name":"a","level":"raid1","devices":["/dev/vdb","/dev/vdc"]}],"luks":[{"name":"c","device":"/dev/vdc"}]}}`, []want{{1, 145, E, "/dev/vdc is already used by array a"}}},
		{"raid member by-label", v + `{"raid":[{"name":"md0","level":"raid1","devices":["/dev/disk/by-label/x","/dev/vdc"]}]}}`, []want{{1, 93, E, "the initramfs has no udev links"}}},
		{"raid of arrays", v + `{"raid":[{"name":"a","level":"raid1","devices":["/dev/vdb","/dev/vdc"]},{"name":"b","level":"raid1","devices":["/dev/md/a","/dev/vdd"]}]}}`, []want{{1, 154, E, "Pith does not nest arrays"}}},
		{"raid of a volume", v + `{"raid":[{"name":"a","level":"raid1","devices":["/dev/mapper/c","/dev/vdc"]}],"luks":[{"name":"c","device":"/dev/vdd"}]}}`, []want{{1, 91, E, "volumes are opened after the arrays are built"}}},
		{"filesystem on an unknown array", v + `{"filesystems":[{"device":"/dev/md/nope","format":"ext4"}]}}`, []want{{1, 69, E, `no storage.raid is named "nope"`}}},
		{"filesystem on an unknown volume", v + `{"filesystems":[{"device":"/dev/disk/by-id/dm-name-nope","format":"ext4"}]}}`, []want{{1, 69, E, `no storage.luks is named "nope"`}}},
		{"filesystem on an array member", v + `{"raid":[{"name":"md0","level":"raid1","devices":["/dev/vdb","/dev/vdc"]}],"filesystems":[{"device":"/dev/vdb","format":"ext4"}]}}`, []want{{1, 143, E, "/dev/vdb is used by array md0: make the filesystem on /dev/md/md0"}}},
		{"filesystem on a volume's device", v + `{"luks":[{"name":"c","device":"/dev/vdb"}],"filesystems":[{"device":"/dev/vdb","format":"ext4"}]}}`, []want{{1, 111, E, "make the filesystem on /dev/mapper/c"}}},
		{"partitioning an array", v + `{"raid":[{"name":"md0","level":"raid1","devices":["/dev/vdb","/dev/vdc"]}],"disks":[{"device":"/dev/md/md0"}]}}`, []want{{1, 137, E, "Pith partitions disks, not arrays"}}},
		{"luks on an unknown array", v + `{"luks":[{"name":"c","device":"/dev/md/x"}]}}`, []want{{1, 73, E, `no storage.raid is named "x"`}}},
		{"luks on luks", v + `{"luks":[{"name":"c","device":"/dev/vdb"},{"name":"d","device":"/dev/mapper/c"}]}}`, []want{{1, 106, E, "one LUKS volume is not put in another"}}},
		{"luks name twice (Ignition's check)", v + `{"luks":[{"name":"c","device":"/dev/vdb"},{"name":"c","device":"/dev/vdc"}]}}`, []want{{1, 86, E, "duplicate entry"}}},
		{"luks https key", v + `{"luks":[{"name":"c","device":"/dev/vdb","keyFile":{"source":"https://example.com/k"}}]}}`, []want{{1, 104, E, "keyFile must be a data: URL, not https://example.com/k"}}},
		{"luks empty key", v + `{"luks":[{"name":"c","device":"/dev/vdb","keyFile":{"source":"data:,"}}]}}`, []want{{1, 104, E, "the keyFile is empty"}}},
		{"luks tang", v + `{"luks":[{"name":"c","device":"/dev/vdb","clevis":{"tang":[{"url":"http://t","thumbprint":"x"}]}}]}}`, []want{{1, 102, E, "not to tang servers"}}},
		{"luks custom pin", v + `{"luks":[{"name":"c","device":"/dev/vdb","clevis":{"custom":{"pin":"sss","config":"{}"}}}]}}`, []want{{1, 104, E, "Pith has no clevis"}}},
		{"luks threshold 2", v + `{"luks":[{"name":"c","device":"/dev/vdb","clevis":{"tpm2":true,"threshold":2}}]}}`, []want{{1, 118, E, "the threshold is 1"}}},
		{"luks uuid not a UUID", v + `{"luks":[{"name":"c","device":"/dev/vdb","uuid":"abc"}]}}`, []want{{1, 91, E, `uuid "abc" is not a UUID`}}},
		{"luks type option", v + `{"luks":[{"name":"c","device":"/dev/vdb","options":["--type=luks1"]}]}}`, []want{{1, 95, E, "--type is set by Pith"}}},
		{"btrfs", v + `{"filesystems":[{"device":"/dev/vdb","format":"btrfs","path":"/srv"}]}}`, []want{{1, 89, E, `not "btrfs"`}}},
		{"mount over /var", v + `{"filesystems":[{"device":"/dev/vdb","format":"ext4","path":"/var"}]}}`, []want{{1, 103, E, "/var is part of the OS"}}},
		{"swap with a path", v + `{"filesystems":[{"device":"/dev/vdb","format":"swap","path":"/srv"}]}}`, []want{{1, 103, E, "swap area has no mount path"}}},
		// resize (spec 3.2+) grows a partition in place on first boot;
		// Ignition's own checks still apply to the entry.
		{"resize by number and by label", v + `{"disks":[{"device":"/dev/vdb","partitions":[{"number":1,"resize":true,"sizeMiB":0},{"label":"data","resize":true,"sizeMiB":2048}]}],"filesystems":[{"device":"/dev/disk/by-partlabel/data","format":"ext4","path":"/srv"}]}}`, nil},
		{"resize without a number or label", v + `{"disks":[{"device":"/dev/vdb","partitions":[{"resize":true}]}]}}`, []want{{1, 89, E, "a partition number >= 1 or a label must be specified"}}},
		{"resize in spec 3.1 (no such key there)", `{"ignition":{"version":"3.1.0"},"storage":{"disks":[{"device":"/dev/vdb","partitions":[{"number":1,"resize":true}]}]}}`, []want{{1, 100, W, "unused key resize"}}},
		{"partition numbers collide", v + `{"disks":[{"device":"/dev/vdb","partitions":[{"number":1,"label":"a"},{"number":1,"label":"b"}]}]}}`, []want{{1, 114, E, "partition numbers collide"}, {1, 114, E, "duplicate entry"}}},
		{"shouldExist false with a label", v + `{"disks":[{"device":"/dev/vdb","partitions":[{"number":1,"label":"a","shouldExist":false}]}]}}`, []want{{1, 89, E, "shouldExist specified false with other options"}}},
		{"shouldExist false beside a number 0", v + `{"disks":[{"device":"/dev/vdb","partitions":[{"label":"a"},{"number":2,"shouldExist":false}]}]}}`, []want{{1, 88, E, "other partition(s) has start or size 0"}}},
		{"partition number past 128", v + `{"disks":[{"device":"/dev/vdb","partitions":[{"number":129,"label":"x"}]}]}}`, []want{{1, 89, E, "not a GPT partition number (1-128)"}}},
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
