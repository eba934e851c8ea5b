package storage

import (
	"strings"
	"testing"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
)

func bp(b bool) *bool { return &b }

func TestFromConfig(t *testing.T) {
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
		want *Plan
		err  string
	}{
		{name: "nothing", want: &Plan{}},
		{name: "disk with defaults",
			cfg:  igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/vdb", WipeTable: bp(true), Partitions: []igntypes.Partition{{Label: sp("data"), TypeGUID: sp("0fc63daf-8483-4772-8e79-3d69d8477de4")}}}}},
			want: &Plan{Disks: []Disk{{Device: "/dev/vdb", WipeTable: true, Partitions: []Partition{{Label: sp("data"), TypeGUID: LinuxFilesystemType, ShouldExist: true}}}}}},
		{name: "filesystem without format is skipped as Ignition does",
			cfg:  igntypes.Storage{Filesystems: []igntypes.Filesystem{{Device: "/dev/vdb"}}},
			want: &Plan{}},
		{name: "ext4 with options",
			cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{{Device: "/dev/vdb1", Format: sp("ext4"), Path: sp("/var/lib/docker"), Label: sp("docker"),
				WipeFilesystem: bp(true), Options: []igntypes.FilesystemOption{"-E", "lazy_itable_init=1"}, MountOptions: []igntypes.MountOption{"noatime"}}}},
			want: &Plan{Filesystems: []Filesystem{{Device: "/dev/vdb1", Format: "ext4", Path: "/var/lib/docker", Label: "docker", Wipe: true,
				Options: []string{"-E", "lazy_itable_init=1"}, MountOptions: []string{"noatime"}}}}},
		{name: "raid refused", cfg: igntypes.Storage{Raid: []igntypes.Raid{{Name: "md0"}}}, err: "storage.raid: Pith does not build RAID"},
		{name: "luks refused", cfg: igntypes.Storage{Luks: []igntypes.Luks{{Name: "x"}}}, err: "storage.luks"},
		{name: "btrfs refused", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("/dev/vdb", "btrfs", "/srv")}}, err: "storage.filesystems.0.format"},
		{name: "mount over /etc refused", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("/dev/vdb", "ext4", "/etc")}}, err: "/etc is part of the OS"},
		{name: "mount in /usr refused", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("/dev/vdb", "ext4", "/usr/local")}}, err: "read-only /usr"},
		{name: "relative device", cfg: igntypes.Storage{Filesystems: []igntypes.Filesystem{fs("vdb", "ext4", "/srv")}}, err: "not a /dev path"},
		{name: "disk twice", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/vdb"}, {Device: "/dev/vdb"}}}, err: "listed twice"},
		{name: "resize refused", cfg: igntypes.Storage{Disks: []igntypes.Disk{{Device: "/dev/vdb", Partitions: []igntypes.Partition{{Number: 1, Resize: bp(true)}}}}}, err: "partitions.0.resize"},
		{name: "every problem reported", cfg: igntypes.Storage{Raid: []igntypes.Raid{{Name: "md0"}}, Filesystems: []igntypes.Filesystem{fs("/dev/vdb", "zfs", "")}}, err: "storage.raid: Pith does not build RAID arrays yet\nstorage.filesystems.0.format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromConfig(&igntypes.Config{Storage: tc.cfg})
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

func dump(p *Plan) string {
	var b strings.Builder
	for _, d := range p.Disks {
		b.WriteString(d.Device)
		if d.WipeTable {
			b.WriteString(" wipe")
		}
		for _, pt := range d.Partitions {
			b.WriteString(" [" + s(pt.Label) + " " + pt.TypeGUID)
			if pt.ShouldExist {
				b.WriteString(" exist")
			}
			b.WriteString("]")
		}
		b.WriteString("\n")
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

func TestDecide(t *testing.T) {
	ext4 := Filesystem{Device: "/dev/vdb1", Format: "ext4", Label: "data"}
	for _, tc := range []struct {
		name  string
		fs    Filesystem
		found Found
		make  bool
		err   string
	}{
		{"blank device", ext4, Found{}, true, ""},
		{"same format and label kept", ext4, Found{Type: "ext4", Label: "data", UUID: "u"}, false, ""},
		{"other label", ext4, Found{Type: "ext4", Label: "old"}, false, "labelled \"old\""},
		{"other format", ext4, Found{Type: "xfs"}, false, "holds a xfs filesystem"},
		{"other uuid", Filesystem{Format: "ext4", UUID: "AAAA"}, Found{Type: "ext4", UUID: "bbbb"}, false, "UUID bbbb"},
		{"uuid case ignored", Filesystem{Format: "ext4", UUID: "AAAA"}, Found{Type: "ext4", UUID: "aaaa"}, false, ""},
		{"wipe makes anyway", Filesystem{Format: "ext4", Wipe: true}, Found{Type: "xfs"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk, err := decide(tc.fs, tc.found)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || mk != tc.make {
				t.Fatalf("decide = %v, %v; want %v", mk, err, tc.make)
			}
		})
	}
}

func TestMkfsArgs(t *testing.T) {
	for _, tc := range []struct {
		fs   Filesystem
		want string
	}{
		{Filesystem{Format: "ext4", Label: "d", UUID: "U", Options: []string{"-m", "0"}}, "mkfs.ext4 -F -q -L d -U U -m 0 /dev/x"},
		{Filesystem{Format: "xfs", Label: "d", UUID: "U"}, "mkfs.xfs -f -L d -m uuid=U /dev/x"},
		{Filesystem{Format: "vfat", Label: "EFI", UUID: "ABCD-1234"}, "mkfs.vfat -n EFI -i ABCD1234 /dev/x"},
		{Filesystem{Format: "swap", Label: "s"}, "mkswap -f -L s /dev/x"},
	} {
		if got := strings.Join(mkfsArgs(tc.fs, "/dev/x"), " "); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.fs.Format, got, tc.want)
		}
	}
}

func TestUnit(t *testing.T) {
	for _, tc := range []struct {
		fs   Filesystem
		uuid string
		name string
		has  []string
	}{
		{Filesystem{Device: "/dev/vdb1", Format: "ext4", Path: "/var/lib/docker/", MountOptions: []string{"noatime", "discard"}}, "1234-ab",
			"var-lib-docker.mount", []string{"What=/dev/disk/by-uuid/1234-ab\n", "Where=/var/lib/docker\n", "Type=ext4\n", "Options=noatime,discard\n", "RequiredBy=local-fs.target"}},
		{Filesystem{Device: "/dev/vdb1", Format: "xfs", Path: "/srv/my data"}, "",
			`srv-my\x20data.mount`, []string{"What=/dev/vdb1\n", "Where=/srv/my data\n"}},
		{Filesystem{Device: "/dev/vdc", Format: "swap"}, "5678",
			"dev-disk-by\\x2duuid-5678.swap", []string{"[Swap]\nWhat=/dev/disk/by-uuid/5678\n", "RequiredBy=swap.target"}},
		{Filesystem{Device: "/dev/vdc", Format: "ext4"}, "5678", "", nil},
	} {
		name, body := Unit(tc.fs, tc.uuid)
		if name != tc.name {
			t.Errorf("%s: unit %q, want %q", tc.fs.Device, name, tc.name)
		}
		for _, h := range tc.has {
			if !strings.Contains(body, h) {
				t.Errorf("%s lacks %q:\n%s", name, h, body)
			}
		}
	}
}
