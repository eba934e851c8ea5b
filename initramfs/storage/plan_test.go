package storage

import (
	"strings"
	"testing"
)

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
		{"vfat volume id without its dash kept", Filesystem{Format: "vfat", UUID: "abcd1234"}, Found{Type: "vfat", UUID: "ABCD-1234"}, false, ""},
		{"vfat volume id with its dash kept", Filesystem{Format: "vfat", UUID: "ABCD-1234"}, Found{Type: "vfat", UUID: "ABCD-1234"}, false, ""},
		{"other vfat volume id", Filesystem{Format: "vfat", UUID: "ABCD-1234"}, Found{Type: "vfat", UUID: "ABCD-1235"}, false, "UUID ABCD-1235"},
		{"dash not ignored beyond vfat", Filesystem{Format: "xfs", UUID: "aaaa-bbbb"}, Found{Type: "xfs", UUID: "aaaabbbb"}, false, "UUID aaaabbbb"},
		{"wipe makes anyway", Filesystem{Format: "ext4", Wipe: true}, Found{Type: "xfs"}, true, ""},
		{"disk with a partition table", Filesystem{Device: "/dev/vdc", Format: "ext4"}, parseBlkid("DEVNAME=/dev/vdc\nPTUUID=1c7b\nPTTYPE=gpt\n"), false, "/dev/vdc holds a gpt partition table; set wipeFilesystem"},
		{"wipe replaces a partition table", Filesystem{Format: "ext4", Wipe: true}, Found{PTType: "dos"}, true, ""},
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

// What bookworm's mkfs tools print when they refuse (stdout and stderr
// through one pipe, as the init runs them).
func TestFirstAndLastLine(t *testing.T) {
	for _, tc := range []struct{ name, out, want string }{
		{"mkfs.xfs too small", "Filesystem must be larger than 300MB.\nUsage: mkfs.xfs\n/* blocksize */\t\t[-b size=num]\n<value> is xxx (512 byte blocks).\n",
			"Filesystem must be larger than 300MB. ... <value> is xxx (512 byte blocks)."},
		{"mkfs.fat usage first", "Usage: mkfs.vfat [OPTIONS] TARGET [BLOCKS]\n  --help          Show this help message and exit\nmkfs.fat 4.2 (2021-01-31)\nVolume ID does not fit in 32 bit\n",
			"Usage: mkfs.vfat [OPTIONS] TARGET [BLOCKS] ... Volume ID does not fit in 32 bit"},
		{"mkfs.fat banner last", "mkfs.vfat: Labels with characters *?.,;:/\\|+=<>[]\" are not allowed\n\nmkfs.fat 4.2 (2021-01-31)\n",
			`mkfs.vfat: Labels with characters *?.,;:/\|+=<>[]" are not allowed ... mkfs.fat 4.2 (2021-01-31)`},
		{"one line", "mkswap: error: /dev/x is mounted; will not make swapspace\n", "mkswap: error: /dev/x is mounted; will not make swapspace"},
		{"nothing", "", ""},
	} {
		if got := firstAndLastLine(tc.out); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
