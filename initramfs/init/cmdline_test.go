package pithinit

import (
	"strings"
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	const usr = "5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6"
	tests := []struct {
		name, line string
		want       Cmdline
		err        string
	}{
		{
			name: "contract line",
			line: "BOOT_IMAGE=/pith/vmlinuz-a console=tty0 console=ttyS0,115200n8 panic=10 pith.slot=a pith.usr=PARTUUID=" + usr +
				" pith.root=PARTUUID=3884DD41-8582-4404-B9A8-E9B84F2DF50E pith.oem=PARTUUID=0FC63DAF-8483-4772-8E79-3D69D8477DE4 pith.platform=qemu\n",
			want: Cmdline{Slot: "a", Usr: Spec{"PARTUUID", strings.ToUpper(usr)},
				Root:     Spec{"PARTUUID", "3884DD41-8582-4404-B9A8-E9B84F2DF50E"},
				OEM:      Spec{"PARTUUID", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
				Platform: "qemu", Init: DefaultInit, Wait: DefaultWait},
		},
		{
			name: "debug, hash, wait, init, default root",
			line: "pith.slot=b pith.usr=/dev/vda4 pith.debug pith.usrhash=00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF pith.wait=5s pith.init=/sbin/init",
			want: Cmdline{Slot: "b", Usr: Spec{"path", "/dev/vda4"}, Root: Spec{"PARTLABEL", "ROOT"},
				Debug: true, UsrHash: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", Init: "/sbin/init", Wait: 5 * time.Second},
		},
		{
			name: "quoted value and partlabel",
			line: `foo="a b c" pith.usr=PARTLABEL=USR-A pith.debug=0`,
			want: Cmdline{Usr: Spec{"PARTLABEL", "USR-A"}, Root: Spec{"PARTLABEL", "ROOT"}, Init: DefaultInit, Wait: DefaultWait},
		},
		{
			name: "verity off (debug images)",
			line: "pith.usr=/dev/vda3 pith.verity=off",
			want: Cmdline{Usr: Spec{"path", "/dev/vda3"}, Root: Spec{"PARTLABEL", "ROOT"}, NoVerity: true, Init: DefaultInit, Wait: DefaultWait},
		},
		{
			name: "live: no disk partitions needed",
			line: "console=ttyS0 pith.live pith.usrhash=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
			want: Cmdline{Live: true, UsrHash: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", Init: DefaultInit, Wait: DefaultWait},
		},
		{name: "live without a root hash", line: "pith.live", err: "pith.live without pith.usrhash="},
		{name: "no usr", line: "console=ttyS0 pith.slot=a", err: "no pith.usr="},
		{name: "bad slot", line: "pith.slot=c pith.usr=/dev/vda3", err: `pith.slot="c"`},
		{name: "bad guid", line: "pith.usr=PARTUUID=1234", err: "not a GUID"},
		{name: "bad spec", line: "pith.usr=LABEL=USR", err: "want PARTUUID="},
		{name: "bad hash", line: "pith.usr=/dev/vda3 pith.usrhash=xyz", err: "pith.usrhash"},
		{name: "short hash", line: "pith.usr=/dev/vda3 pith.usrhash=abcd", err: "pith.usrhash"},
		{name: "empty hash (no verity-<slot>.cfg)", line: "pith.usr=/dev/vda3 pith.usrhash=", err: "no dm-verity root hash for this slot"},
		{name: "verity on is no setting", line: "pith.usr=/dev/vda3 pith.verity=on", err: "pith.verity"},
		{name: "relative init", line: "pith.usr=/dev/vda3 pith.init=systemd", err: "absolute path"},
		{name: "bad wait", line: "pith.usr=/dev/vda3 pith.wait=forever", err: "pith.wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.line)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.want {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestGUIDRoundTrip(t *testing.T) {
	const s = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	g, err := ParseGUID(strings.ToLower(s))
	if err != nil {
		t.Fatal(err)
	}
	// On disk the first three fields are little-endian.
	if g[0] != 0x28 || g[3] != 0xC1 || g[4] != 0x1F || g[6] != 0xD2 || g[8] != 0xBA {
		t.Errorf("on-disk bytes %x are not mixed-endian", g[:])
	}
	if g.String() != s {
		t.Errorf("String() = %s, want %s", g, s)
	}
}
