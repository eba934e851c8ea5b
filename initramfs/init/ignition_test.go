package pithinit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/fwcfg"
	"github.com/pith-os/pith/initramfs/storage"
)

// The runner finds tools in the new root's /usr, not in the initramfs's
// PATH, and runs them chrooted there ("/" here: the build machine).
func TestChrootRunner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	if _, err := os.Stat("/usr/sbin/blkid"); err != nil {
		t.Skip("no /usr/sbin/blkid on this machine")
	}
	t.Setenv("PATH", t.TempDir()) // nothing found through PATH
	out, err := chrootRunner{root: "/"}.Run("blkid", "--version")
	if err != nil || !strings.Contains(string(out), "blkid from util-linux") {
		t.Fatalf("blkid --version: %v: %s", err, out)
	}
	_, err = chrootRunner{root: t.TempDir()}.Run("mkfs.xfs", "/dev/null")
	if err == nil || !strings.Contains(err.Error(), "not in this image's /usr") {
		t.Fatalf("a tool missing from the root: %v", err)
	}
	var ee *exec.ExitError
	if _, err := (chrootRunner{root: "/"}).Run("blkid", "-p", filepath.Join(t.TempDir(), "none")); err == nil || !errors.As(err, &ee) {
		t.Fatalf("blkid on a missing file: %v, want its exit status", err)
	}
	// An absolute link (bookworm's /usr/sbin/modprobe -> /bin/kmod) is
	// the root's tool, resolved in the chroot, not on this side: here
	// its target is missing there too, so exec fails, but it was found.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/pith-no-such-tool", filepath.Join(root, "usr/sbin/modprobe")); err != nil {
		t.Fatal(err)
	}
	if _, err := (chrootRunner{root: root}).Run("modprobe", "-a", "md_mod"); err == nil || strings.Contains(err.Error(), "not in this image's /usr") {
		t.Fatalf("tool behind an absolute link: %v, want an exec error", err)
	}
}

func TestStorageMarkers(t *testing.T) {
	root := t.TempDir()
	if err := checkStorageMarkers(root); err != nil {
		t.Fatalf("no markers: %v", err)
	}
	if err := writeMarker(filepath.Join(root, StorageStarted), ""); err != nil {
		t.Fatal(err)
	}
	err := checkStorageMarkers(root)
	var stop *StopError
	if !errors.As(err, &stop) || !strings.Contains(err.Error(), "half-provisioned") {
		t.Fatalf("started without done: %v, want a StopError", err)
	}
	if err := writeMarker(filepath.Join(root, StorageDone), "sum\n"); err != nil {
		t.Fatal(err)
	}
	if err := checkStorageMarkers(root); err != nil {
		t.Fatalf("started and done: %v", err)
	}
}

// The storage stage fails closed as the agent's fetch did before the init
// read fw_cfg itself: with storage to apply, a meta-data pithd would
// refuse (unreadable, not JSON in its shape) stops the boot before any
// disk is touched; absent is fine, and without storage the meta-data is
// left to pithd's first-boot stage.
func TestFwCfgStorage(t *testing.T) {
	const storageCfg = `{"ignition":{"version":"3.4.0"},"storage":{
  "disks":[{"device":"/dev/disk/by-id/virtio-data1","wipeTable":true,"partitions":[{"label":"data"}]}],
  "filesystems":[{"device":"/dev/disk/by-partlabel/data","format":"ext4","path":"/srv"}]}}`
	const noStorage = `{"ignition":{"version":"3.4.0"},"systemd":{"units":[{"name":"a.service","enabled":true}]}}`
	const badIgnition = `{"ignition":{"version":"3.4.0"},"storage":{"disks":[{"device":"/dev/vdb","partitions":[{"label":"d"}]}]},"systemd":{"units":[{"name":"no-suffix"}]}}`
	const meta = `{"hostname":"n1","private_ipv4":"10.0.2.15"}`
	for _, tc := range []struct {
		name     string
		userData string // "" = no user-data entry
		metaData string // "" = no meta-data entry; "<dir>" = unreadable
		disks    int    // plan's disks when there is no error; 0 = no plan
		stop     string // the StopError's text, "" for none
	}{
		{"no user-data", "", "{bad", 0, ""},
		{"storage, no meta-data", storageCfg, "", 1, ""},
		{"storage, meta-data", storageCfg, meta, 1, ""},
		{"storage, meta-data not JSON", storageCfg, "{bad", 0, "Ignition storage (reading fw_cfg meta-data) failed, the first boot stops here as Ignition does: fw_cfg opt/org.pith/meta-data is not valid JSON metadata: invalid character"},
		{"storage, meta-data of another shape", storageCfg, `{"private_ipv4":"10.0.2"}`, 0, "(reading fw_cfg meta-data) failed, the first boot stops here as Ignition does: fw_cfg opt/org.pith/meta-data is not valid JSON metadata: invalid IP address"},
		{"storage, meta-data unreadable", storageCfg, "<dir>", 0, "(reading fw_cfg meta-data) failed"},
		{"Ignition without storage, bad meta-data", noStorage, "{bad", 0, ""},
		{"cloud-config, bad meta-data", "#cloud-config\nhostname: a\n", "{bad", 0, ""},
		{"invalid Ignition with storage", badIgnition, meta, 0, "(validating the Ignition config from fw_cfg) failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{}
			if tc.userData != "" {
				files[filepath.Join(fwcfg.Dir, fwcfg.UserData, "raw")] = tc.userData
			}
			switch tc.metaData {
			case "":
			case "<dir>":
				files[filepath.Join(fwcfg.Dir, fwcfg.MetaData, "raw", "x")] = ""
			default:
				files[filepath.Join(fwcfg.Dir, fwcfg.MetaData, "raw")] = tc.metaData
			}
			writeTree(t, root, files)
			plan, data, err := fwCfgStoragePlan(root)
			if tc.stop != "" {
				var stop *StopError
				if !errors.As(err, &stop) || !strings.Contains(err.Error(), tc.stop) || strings.Contains(err.Error(), "\n") || plan != nil {
					t.Fatalf("fwCfgStoragePlan = plan %v, %v; want a one-line stop %q", plan, err, tc.stop)
				}
				return
			}
			if err != nil {
				t.Fatalf("fwCfgStoragePlan: %v", err)
			}
			if tc.disks == 0 {
				if plan != nil {
					t.Fatalf("plan %+v, want none", plan)
				}
				return
			}
			if plan == nil || len(plan.Disks) != tc.disks || string(data) != tc.userData {
				t.Fatalf("plan %+v, user-data %q; want %d disks and the user-data", plan, data, tc.disks)
			}
		})
	}
}

// fwCfgStoragePlan is what the first boot reads from fw_cfg below root for
// its storage stage: the config (userDataIgnition) and its plan
// (storagePlan).
func fwCfgStoragePlan(root string) (*storage.Plan, []byte, error) {
	plan, data, _, err := storagePlanFrom(root, nil)
	return plan, data, err
}

func storagePlanFrom(root string, oem oemReader) (*storage.Plan, []byte, string, error) {
	return storagePlanCmdline(root, "", oem)
}

func storagePlanCmdline(root, cmdline string, oem oemReader) (*storage.Plan, []byte, string, error) {
	sources, _ := firstBootSources(root, cmdline, oem, nil, nil)
	cfg, data, src, err := userDataIgnition(sources)
	if err != nil || cfg == nil {
		return nil, nil, "", err
	}
	plan, err := storagePlan(root, cfg)
	if err != nil || plan == nil {
		return nil, nil, "", err
	}
	return plan, data, src.Name, nil
}

// The OEM partition's config.ign (pith install) is the first boot's
// config when fw_cfg has no user-data, read as fw_cfg's is; fw_cfg's
// user-data wins; an OEM that cannot be read stops the boot.
func TestOEMIgnitionStorage(t *testing.T) {
	const storageCfg = `{"ignition":{"version":"3.4.0"},"storage":{
  "disks":[{"device":"/dev/disk/by-id/virtio-data1","wipeTable":true,"partitions":[{"label":"data"}]}],
  "filesystems":[{"device":"/dev/disk/by-partlabel/data","format":"ext4","path":"/srv"}]}}`
	const badIgnition = `{"ignition":{"version":"3.4.0"},"storage":{"disks":[{"device":"/dev/vdb","partitions":[{"label":"d"}]}]},"systemd":{"units":[{"name":"no-suffix"}]}}`
	for _, tc := range []struct {
		name   string
		fwCfg  string // fw_cfg user-data, "" for none
		oem    string // OEM config.ign, "" for none
		noOEM  bool   // no pith.oem= on the kernel line (no reader)
		oemErr error  // the OEM partition cannot be read
		disks  int    // plan's disks; 0 = no plan
		source string
		stop   string
	}{
		{name: "OEM config.ign, no fw_cfg", oem: storageCfg, disks: 1, source: "OEM config.ign"},
		{name: "fw_cfg wins over OEM", fwCfg: "#cloud-config\nhostname: a\n", oem: storageCfg},
		{name: "fw_cfg Ignition wins over OEM", fwCfg: storageCfg, oem: "{}", disks: 1, source: "fw_cfg"},
		{name: "neither", disks: 0},
		{name: "no pith.oem=", oem: storageCfg, noOEM: true},
		{name: "invalid OEM config.ign with storage", oem: badIgnition, stop: "(validating the Ignition config from OEM config.ign) failed"},
		{name: "OEM config.ign too large", oem: string(make([]byte, cloudconfig.MaxSize+1)), stop: "config.ign is larger than"},
		{name: "OEM partition unreadable", oemErr: errors.New("finding the OEM partition PARTUUID=X: no such device"), stop: "(reading the OEM partition's config.ign) failed, the first boot stops here as Ignition does: finding the OEM partition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, oemDir := t.TempDir(), t.TempDir()
			files := map[string]string{}
			if tc.fwCfg != "" {
				files[filepath.Join(fwcfg.Dir, fwcfg.UserData, "raw")] = tc.fwCfg
			}
			writeTree(t, root, files)
			if tc.oem != "" {
				writeTree(t, oemDir, map[string]string{OEMIgnition: tc.oem})
			}
			oem := oemReader(func() ([]byte, error) {
				if tc.oemErr != nil {
					return nil, tc.oemErr
				}
				return readOEMIgnition(oemDir)
			})
			if tc.noOEM {
				oem = nil
			}
			plan, data, source, err := storagePlanFrom(root, oem)
			if tc.stop != "" {
				var stop *StopError
				if !errors.As(err, &stop) || !strings.Contains(err.Error(), tc.stop) || plan != nil {
					t.Fatalf("plan %v, %v; want a stop %q", plan, err, tc.stop)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.disks == 0 {
				if plan != nil {
					t.Fatalf("plan %+v, want none", plan)
				}
				return
			}
			want := tc.oem
			if tc.source == "fw_cfg" {
				want = tc.fwCfg
			}
			if plan == nil || len(plan.Disks) != tc.disks || string(data) != want || source != tc.source {
				t.Fatalf("plan %+v, user-data %q from %q; want %d disks, %q from %q", plan, data, source, tc.disks, want, tc.source)
			}
		})
	}
}
