package cloudconfig

import (
	"fmt"
	"strings"
	"testing"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
)

func bp(b bool) *bool     { return &b }
func sp(s string) *string { return &s }
func ip(n int) *int       { return &n }

func TestIgnitionStoragePlan(t *testing.T) {
	fs := func(dev, format, path string) igntypes.Filesystem {
		f := igntypes.Filesystem{Device: dev, Format: sp(format)}
		if path != "" {
			f.Path = sp(path)
		}
		return f
	}
	for _, tc := range []struct {
		name string
		cfg  igntypes.Storage
		want *StoragePlan
		err  string
	}{
		{name: "nothing", want: &StoragePlan{}},
		{name: "disk with defaults",
			cfg:  igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/vdb", WipeTable: bp(true), Partitions: []igntypes.Partition{{Label: sp("data"), TypeGUID: sp("0fc63daf-8483-4772-8e79-3d69d8477de4")}}}}},
			want: &StoragePlan{Disks: []StorageDisk{{Device: "/dev/vdb", WipeTable: true, Partitions: []StoragePartition{{Label: sp("data"), TypeGUID: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", ShouldExist: true}}}}}},
		{name: "filesystem without format is skipped as Ignition does",
			cfg:  igntypes.Storage{Filesystems: []igntypes.Filesystem{{Device: "/dev/vdb"}}},
			want: &StoragePlan{}},
		{name: "ext4 with options",
			cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{{Device: "/dev/vdb1", Format: sp("ext4"), Path: sp("/var/lib/docker"), Label: sp("docker"),
				WipeFilesystem: bp(true), Options: []igntypes.FilesystemOption{"-E", "lazy_itable_init=1"}, MountOptions: []igntypes.MountOption{"noatime"}}}},
			want: &StoragePlan{Filesystems: []StorageFilesystem{{Device: "/dev/vdb1", Format: "ext4", Path: "/var/lib/docker", Label: "docker", Wipe: true,
				Options: []string{"-E", "lazy_itable_init=1"}, MountOptions: []string{"noatime"}}}}},
		{name: "raid1 of two disks, level alias, options",
			cfg:  igntypes.Storage{Raid: []igntypes.Raid{{Name: "data", Level: sp("mirror"), Devices: []igntypes.Device{"/dev/vdb", "/dev/disk/by-id/virtio-pith-extra-2"}, Options: []igntypes.RaidOption{"--bitmap=internal"}}}},
			want: &StoragePlan{Raid: []StorageRaid{{Name: "data", Level: "raid1", Devices: []string{"/dev/vdb", "/dev/disk/by-id/virtio-pith-extra-2"}, Options: []string{"--bitmap=internal"}}}}},
		{name: "raid5 with a spare",
			cfg:  igntypes.Storage{Raid: []igntypes.Raid{{Name: "r", Level: sp("5"), Spares: ip(1), Devices: []igntypes.Device{"/dev/vdb", "/dev/vdc", "/dev/vdd", "/dev/vde"}}}},
			want: &StoragePlan{Raid: []StorageRaid{{Name: "r", Level: "raid5", Spares: 1, Devices: []string{"/dev/vdb", "/dev/vdc", "/dev/vdd", "/dev/vde"}}}}},
		{name: "raid0 with a spare refused", cfg: igntypes.Storage{Raid: []igntypes.Raid{{Name: "r", Level: sp("raid0"), Spares: ip(1), Devices: []igntypes.Device{"/dev/vdb", "/dev/vdc", "/dev/vdd"}}}}, err: "storage.raid.0.spares: a raid0 array has no spares"},
		{name: "raid without level refused", cfg: igntypes.Storage{Raid: []igntypes.Raid{{Name: "md0"}}}, err: "storage.raid.0.level"},
		{name: "luks on an array with the TPM, ext4 on it",
			cfg: igntypes.Storage{Raid: []igntypes.Raid{{Name: "md", Level: sp("raid1"), Devices: []igntypes.Device{"/dev/vdb", "/dev/vdc"}}},
				Luks:        []igntypes.Luks{{Name: "data", Device: sp("/dev/md/md"), Clevis: igntypes.Clevis{Tpm2: bp(true)}, Discard: bp(true), WipeVolume: bp(true), Label: sp("l"), OpenOptions: []igntypes.OpenOption{"--perf-no_read_workqueue"}}},
				Filesystems: []igntypes.Filesystem{fs("/dev/mapper/data", "ext4", "/var/lib/docker")}},
			want: &StoragePlan{Raid: []StorageRaid{{Name: "md", Level: "raid1", Devices: []string{"/dev/vdb", "/dev/vdc"}}},
				Luks:        []StorageLuks{{Name: "data", Device: "/dev/md/md", TPM2: true, Discard: true, Wipe: true, Label: "l", OpenOptions: []string{"--perf-no_read_workqueue"}}},
				Filesystems: []StorageFilesystem{{Device: "/dev/mapper/data", Format: "ext4", Path: "/var/lib/docker"}}}},
		{name: "luks key with a wrong hash refused",
			cfg: igntypes.Storage{Luks: []igntypes.Luks{{Name: "k", Device: sp("/dev/vdb"), KeyFile: igntypes.Resource{Source: sp("data:;base64,H4sIAAAAAAAAAys2Ti5KLVHkAgDOA07gCAAAAA=="), Compression: sp("gzip"),
				Verification: igntypes.Verification{Hash: sp("sha256-0d6f2c5bd1d83bc16ebd1fd3d1c3b2c9cc3a5f1b5da00a1c3a3dba2fd8f4e1c5")}}}}},
			err: "storage.luks.0.keyFile.source: the keyFile does not match its verification.hash"},
		{name: "luks key from a gzipped data: URL with its hash",
			cfg: igntypes.Storage{Luks: []igntypes.Luks{{Name: "k", Device: sp("/dev/vdb"), KeyFile: igntypes.Resource{Source: sp("data:;base64,H4sIAAAAAAAAAys2Ti5KLVHkAgDOA07gCAAAAA=="), Compression: sp("gzip"),
				Verification: igntypes.Verification{Hash: sp("sha256-b11adb031500dac341d5aa022f05d6c25f8ddeb943159475eb997d1d45f3f189")}}}}},
			want: &StoragePlan{Luks: []StorageLuks{{Name: "k", Device: "/dev/vdb", Key: []byte("s3cret!\n")}}}},
		{name: "luks key over http refused", cfg: igntypes.Storage{Luks: []igntypes.Luks{{Name: "k", Device: sp("/dev/vdb"), KeyFile: igntypes.Resource{Source: sp("http://10.0.0.1/k")}}}}, err: "keyFile must be a data: URL"},
		{name: "luks cex refused", cfg: igntypes.Storage{Luks: []igntypes.Luks{{Name: "k", Device: sp("/dev/vdb"), Cex: igntypes.Cex{Enabled: bp(true)}}}}, err: "storage.luks.0.cex"},
		{name: "btrfs refused", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("/dev/vdb", "btrfs", "/srv")}}, err: "storage.filesystems.0.format"},
		{name: "mount over /etc refused", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("/dev/vdb", "ext4", "/etc")}}, err: "/etc is part of the OS"},
		{name: "mount in /usr refused", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("/dev/vdb", "ext4", "/usr/local")}}, err: "read-only /usr"},
		{name: "relative device", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("vdb", "ext4", "/srv")}}, err: "not a /dev path"},
		{name: "by-label refused", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("/dev/disk/by-label/data", "ext4", "/srv")}}, err: "storage.filesystems.0.device: \"/dev/disk/by-label/data\": the initramfs has no udev links"},
		{name: "by-uuid refused", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("/dev/disk/by-uuid/1c7b0c2e-0000-4000-8000-000000000001", "ext4", "")}}, err: "no udev links"},
		{name: "by-path refused", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/disk/by-path/pci-0000:00:05.0"}}}, err: "storage.disks.0.device"},
		{name: "non-virtio by-id refused", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001"}}}, err: "no udev links"},
		{name: "bad partuuid refused", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("/dev/disk/by-partuuid/data", "ext4", "")}}, err: "not a GUID"},
		{name: "partition as disk refused", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/vdb2"}}}, err: "/dev/vdb2 is a partition, not a disk"},
		{name: "nvme partition as disk refused", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/nvme0n1p1"}}}, err: "is a partition"},
		{name: "by-partlabel as disk refused", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/disk/by-partlabel/data"}}}, err: "is a partition"},
		{name: "by-id partition as disk refused", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/disk/by-id/virtio-pith-extra-1-part1"}}}, err: "is a partition"},
		{name: "accepted forms",
			cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/disk/by-id/virtio-pith-extra-1"}, {Device: "/dev/nvme0n1"}},
				Filesystems: []igntypes.Filesystem{fs("/dev/disk/by-id/virtio-pith-extra-1-part1", "ext4", ""), fs("/dev/disk/by-partlabel/data", "xfs", ""),
					fs("/dev/disk/by-partuuid/1c7b0c2e-0000-4000-8000-000000000001", "swap", ""), fs("/dev/vdc", "ext4", "")}},
			want: &StoragePlan{Disks: []StorageDisk{{Device: "/dev/disk/by-id/virtio-pith-extra-1"}, {Device: "/dev/nvme0n1"}},
				Filesystems: []StorageFilesystem{{Device: "/dev/disk/by-id/virtio-pith-extra-1-part1", Format: "ext4"}, {Device: "/dev/disk/by-partlabel/data", Format: "xfs"},
					{Device: "/dev/disk/by-partuuid/1c7b0c2e-0000-4000-8000-000000000001", Format: "swap"}, {Device: "/dev/vdc", Format: "ext4"}}}},
		{name: "disk twice", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/vdb"}, {Device: "/dev/vdb"}}}, err: "listed twice"},
		{name: "resize", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/vdb", Partitions: []igntypes.Partition{{Number: 1, Resize: bp(true), SizeMiB: ip(0)}}}}},
			want: &StoragePlan{Disks: []StorageDisk{{Device: "/dev/vdb", Partitions: []StoragePartition{{Number: 1, SizeMiB: ip(0), ShouldExist: true, Resize: true}}}}}},
		{name: "every problem reported", cfg: igntypes.Storage{Raid: []igntypes.Raid{{Name: "md0", Level: sp("raid1"), Devices: []igntypes.Device{"/dev/vdb", "/dev/vdc"}}}, Filesystems: []igntypes.Filesystem{fs("/dev/vdb", "zfs", ""), fs("/dev/md/md1", "ext4", "")}},
			err: "storage.filesystems.0.format: Pith makes ext4, xfs, vfat and swap, not \"zfs\"\nstorage.filesystems.1.device: /dev/md/md1: no storage.raid is named \"md1\"\nstorage.filesystems.0.device: /dev/vdb is used by array md0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := IgnitionStoragePlan(&igntypes.Config{Storage: tc.cfg})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g, w := dump(got), dump(tc.want); g != w {
				t.Errorf("plan\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func dump(p *StoragePlan) string {
	var b strings.Builder
	for _, d := range p.Disks {
		b.WriteString(d.Device)
		if d.WipeTable {
			b.WriteString(" wipe")
		}
		for _, pt := range d.Partitions {
			b.WriteString(" [" + strOf(pt.Label) + " " + pt.TypeGUID)
			if pt.ShouldExist {
				b.WriteString(" exist")
			}
			if pt.Resize {
				fmt.Fprintf(&b, " resize %d %v", pt.Number, *pt.SizeMiB)
			}
			b.WriteString("]")
		}
		b.WriteString("\n")
	}
	for _, r := range p.Raid {
		fmt.Fprintf(&b, "raid %s %s %v spares=%d %v\n", r.Name, r.Level, r.Devices, r.Spares, r.Options)
	}
	for _, l := range p.Luks {
		fmt.Fprintf(&b, "luks %s on %s label=%q uuid=%q key=%q wipe=%v discard=%v tpm2=%v %v %v\n", l.Name, l.Device, l.Label, l.UUID, l.Key, l.Wipe, l.Discard, l.TPM2, l.Options, l.OpenOptions)
	}
	for _, f := range p.Filesystems {
		b.WriteString(strings.Join([]string{f.Device, f.Format, f.Path, f.Label, f.UUID, strings.Join(f.Options, ","), strings.Join(f.MountOptions, ",")}, "|"))
		if f.Wipe {
			b.WriteString(" wipe")
		}
		b.WriteString("\n")
	}
	return b.String()
}
