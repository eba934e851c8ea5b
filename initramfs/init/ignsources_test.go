package pithinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/fwcfg"
	"github.com/pith-os/pith/node"
)

// The initramfs reads its sources in pithd's order (agent/datasource.Sources),
// the platform's own first; ignition.config.url, which both take before
// all, is the only one; pith.config.url, which pithd takes next, leaves
// it none.
func TestFirstBootSources(t *testing.T) {
	oem := oemReader(func() ([]byte, error) { return nil, nil })
	for _, tc := range []struct {
		cmdline string
		noOEM   bool
		noEC2   bool // pith-init gives no EC2 reader
		want    string
		note    string
	}{
		{cmdline: "console=ttyS0", want: "qemu-fw-cfg config-drive oem-ignition"},
		{cmdline: "pith.platform=qemu", want: "qemu-fw-cfg config-drive oem-ignition"},
		{cmdline: "pith.platform=openstack", want: "config-drive qemu-fw-cfg oem-ignition"},
		{cmdline: "coreos.oem.id=configdrive", noOEM: true, want: "config-drive qemu-fw-cfg"},
		{cmdline: "pith.platform=openstack ignition.platform.id=ec2", want: "ec2 qemu-fw-cfg config-drive oem-ignition"},
		{cmdline: "pith.platform=ec2", want: "ec2 qemu-fw-cfg config-drive oem-ignition"},
		{cmdline: "coreos.oem.id=aws", noOEM: true, want: "ec2 qemu-fw-cfg config-drive"},
		{cmdline: "pith.platform=ec2", noEC2: true, want: "qemu-fw-cfg config-drive oem-ignition"},
		{cmdline: "pith.platform=ec2 pith.config.url=http://10.0.2.2/ign", note: "names a config URL"},
		{cmdline: "pith.config.url=http://10.0.2.2/ign", note: "names a config URL (http://10.0.2.2/ign), which pithd reads after boot"},
		{cmdline: "cloud-config-url=http://x/y pith.platform=openstack", note: "which pithd reads after boot, with the network"},
		{cmdline: "ignition.config.url=http://10.0.2.2/c.ign pith.platform=ec2", want: "ignition-url"},
		{cmdline: "ignition.config.url=data:,{} pith.oem=PARTUUID=X", want: "ignition-url"},
		{cmdline: "pith.config.url=http://10.0.2.2/cc ignition.config.url=http://u:pw@10.0.2.2/c.ign", want: "ignition-url",
			note: "names ignition.config.url and a config URL (http://10.0.2.2/cc): ignition.config.url comes first"},
		{cmdline: "ignition.config.url=", want: "qemu-fw-cfg config-drive oem-ignition"},
	} {
		t.Run(tc.cmdline+map[bool]string{true: " no EC2 reader"}[tc.noEC2], func(t *testing.T) {
			o := oem
			if tc.noOEM {
				o = nil
			}
			ec2 := func() ([]byte, string, error) { return nil, "", nil }
			if tc.noEC2 {
				ec2 = nil
			}
			var urls []string
			cfgURL := func(u string) func() ([]byte, string, error) {
				urls = append(urls, u)
				return func() ([]byte, string, error) { return nil, "", nil }
			}
			srcs, note := firstBootSources(t.TempDir(), tc.cmdline, o, ec2, cfgURL)
			if len(srcs) == 1 && srcs[0].Pithd == pithdIgnitionURL {
				u := cmdlineValue(tc.cmdline, "ignition.config.url")
				if !srcs[0].Ignition || len(urls) != 1 || urls[0] != u || strings.Contains(srcs[0].Name, "pw") {
					t.Errorf("the URL source %+v read %q, want an Ignition source of %q named without its password", srcs[0], urls, u)
				}
			}
			var got []string
			for _, s := range srcs {
				got = append(got, s.Pithd)
			}
			if strings.Join(got, " ") != tc.want || !strings.Contains(note, tc.note) || (tc.note == "") != (note == "") {
				t.Fatalf("sources %q, note %q; want %q, %q", got, note, tc.want, tc.note)
			}
		})
	}
}

// configDriveTree makes root/sys/class/block/<name> and root/dev/<name>
// image files: each drive {label, user_data, meta_data.json} a FAT config
// drive (mkfs.vfat, mcopy, as operators make one) labelled label, with
// user_data when not "" and a valid meta_data.json unless given.
func configDriveTree(t *testing.T, root string, drives map[string][3]string) {
	t.Helper()
	for name, d := range drives {
		label, ud, meta := d[0], d[1], d[2]
		if meta == "" {
			meta = `{"uuid":"x"}`
		}
		if err := os.MkdirAll(filepath.Join(root, "sys/class/block", name), 0o755); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(root, "dev", name)
		if err := os.MkdirAll(filepath.Dir(img), 0o755); err != nil {
			t.Fatal(err)
		}
		if label == "" { // not a filesystem at all
			if err := os.WriteFile(img, make([]byte, 64<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		src := filepath.Join(t.TempDir(), "openstack")
		writeTree(t, src, map[string]string{"latest/meta_data.json": meta})
		if ud != "" {
			writeTree(t, src, map[string]string{"latest/user_data": ud})
		}
		for _, args := range [][]string{{"truncate", "-s", "4M", img}, {"mkfs.vfat", "-n", label, img}, {"mcopy", "-s", "-i", img, src, "::/"}} {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
		}
	}
}

// A config drive's Ignition config is the first boot's when fw_cfg has
// none (or first with pith.platform=openstack), before the OEM's
// config.ign; a drive without user_data still wins (pithd takes it and
// boots with no config).
func TestConfigDriveIgnitionStorage(t *testing.T) {
	const storageCfg = `{"ignition":{"version":"3.4.0"},"storage":{
  "disks":[{"device":"/dev/disk/by-id/virtio-data1","partitions":[{"number":1,"resize":true,"sizeMiB":0}]}]}}`
	const fwCfg = `{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[{"device":"/dev/vdc","format":"swap"},{"device":"/dev/vdd","format":"swap"}]}}`
	const badIgnition = `{"ignition":{"version":"3.4.0"},"storage":{"disks":[{"device":"/dev/vdb","partitions":[{"label":"d"}]}]},"systemd":{"units":[{"name":"no-suffix"}]}}`
	for _, tc := range []struct {
		name    string
		cmdline string
		fwCfg   string
		drives  map[string][3]string
		oem     string
		disks   int // plan's disks; -1 = no plan
		source  string
		stop    string
	}{
		{name: "config drive, no fw_cfg", drives: map[string][3]string{"sr0": {"config-2", storageCfg}, "vda": {"", ""}, "vdb": {"DATA", storageCfg}}, oem: fwCfg, disks: 1, source: "config drive /dev/sr0"},
		{name: "label in capitals, on a partition", drives: map[string][3]string{"vdb1": {"CONFIG-2", storageCfg}}, disks: 1, source: "config drive /dev/vdb1"},
		{name: "fw_cfg wins over the config drive", fwCfg: fwCfg, drives: map[string][3]string{"sr0": {"config-2", storageCfg}}, disks: 0, source: "fw_cfg"},
		{name: "pith.platform=openstack: the config drive wins over fw_cfg", cmdline: "pith.platform=openstack", fwCfg: fwCfg, drives: map[string][3]string{"sr0": {"config-2", storageCfg}}, disks: 1, source: "config drive /dev/sr0"},
		{name: "a drive without user_data wins over OEM config.ign", drives: map[string][3]string{"sr0": {"config-2", ""}}, oem: storageCfg, disks: -1},
		{name: "no config drive: OEM config.ign", drives: map[string][3]string{"sr0": {"cidata", storageCfg}}, oem: storageCfg, disks: 1, source: "OEM config.ign"},
		{name: "a config URL on the kernel line: nothing here", cmdline: "pith.config.url=http://x/y", drives: map[string][3]string{"sr0": {"config-2", storageCfg}}, disks: -1},
		{name: "invalid config with storage on the drive stops", drives: map[string][3]string{"sr0": {"config-2", badIgnition}}, stop: "(validating the Ignition config from config drive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.fwCfg != "" {
				writeTree(t, root, map[string]string{filepath.Join(fwcfg.Dir, fwcfg.UserData, "raw"): tc.fwCfg})
			}
			configDriveTree(t, root, tc.drives)
			oemDir := t.TempDir()
			if tc.oem != "" {
				writeTree(t, oemDir, map[string]string{OEMIgnition: tc.oem})
			}
			plan, _, source, err := storagePlanCmdline(root, tc.cmdline, func() ([]byte, error) { return readOEMIgnition(oemDir) })
			if tc.stop != "" {
				if err == nil || !strings.Contains(err.Error(), tc.stop) {
					t.Fatalf("err %v, want a stop %q", err, tc.stop)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			source = strings.Replace(source, root, "", 1)
			switch {
			case tc.disks < 0 && plan != nil:
				t.Fatalf("plan %+v from %q, want none", plan, source)
			case tc.disks >= 0 && (plan == nil || len(plan.Disks) != tc.disks || source != tc.source):
				t.Fatalf("plan %+v from %q, want %d disks from %q", plan, source, tc.disks, tc.source)
			}
		})
	}
}

// The initramfs records which source's kernel arguments or storage it
// applies, for pithd's notice; a config with neither records nothing.
func TestRecordSource(t *testing.T) {
	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"storage", `{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[{"device":"/dev/vdb","format":"swap"}]}}`, "config-drive "},
		{"kernel arguments", `{"ignition":{"version":"3.4.0"},"kernelArguments":{"shouldExist":["quiet"]}}`, "config-drive "},
		{"neither", `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/x","contents":{"source":"data:,x"}}]}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			src := firstBootSource{Name: "config drive /dev/sr0", Pithd: pithdConfigDrive, Read: func() ([]byte, string, error) { return []byte(tc.cfg), "", nil }}
			cfg, data, got, err := userDataIgnition([]firstBootSource{src})
			if err != nil || cfg == nil || got.Pithd != pithdConfigDrive {
				t.Fatalf("%+v %v %v", got, cfg, err)
			}
			if err := recordSource(root, cfg, data, got); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(root, node.IgnitionSourceMarker))
			if tc.want == "" {
				if !os.IsNotExist(err) {
					t.Fatalf("marker %q, %v; want none", b, err)
				}
				return
			}
			if err != nil || !strings.HasPrefix(string(b), tc.want) || len(strings.TrimSpace(string(b))) != len(tc.want)+64 {
				t.Fatalf("marker %q, %v; want %q and a sha256", b, err, tc.want)
			}
		})
	}
}

// A config drive whose meta_data.json pithd would refuse stops the boot
// before its storage or kernel arguments are applied (as fw_cfg's
// meta-data does); without either, the node boots and pithd reports it.
func TestConfigDriveBadMetaData(t *testing.T) {
	for _, tc := range []struct {
		name, cfg, stop string
	}{
		{"storage", `{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[{"device":"/dev/vdb","format":"swap"}]}}`, "(reading the config drive /dev/sr0's metadata) failed, the first boot stops here as Ignition does: config drive /dev/sr0: openstack/latest/meta_data.json is not valid JSON"},
		{"kernel arguments", `{"ignition":{"version":"3.4.0"},"kernelArguments":{"shouldExist":["quiet"]}}`, "meta_data.json is not valid JSON"},
		{"neither", `{"ignition":{"version":"3.4.0"}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			configDriveTree(t, root, map[string][3]string{"sr0": {"config-2", tc.cfg, `{"uuid":`}})
			sources, _ := firstBootSources(root, "", nil, nil, nil)
			cfg, data, src, err := userDataIgnition(sources)
			if err != nil || cfg == nil {
				t.Fatalf("%v %v", cfg, err)
			}
			err = recordSource(root, cfg, data, src)
			if tc.stop == "" && err != nil || tc.stop != "" && (err == nil || !strings.Contains(strings.ReplaceAll(err.Error(), root, ""), tc.stop)) {
				t.Fatalf("err %v, want %q", err, tc.stop)
			}
			if _, serr := os.Stat(filepath.Join(root, node.IgnitionSourceMarker)); serr == nil {
				t.Error("the source was recorded for a config that stops (or has nothing to apply)")
			}
		})
	}
}
