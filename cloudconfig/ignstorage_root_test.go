package cloudconfig

import (
	"strings"
	"testing"
)

// rootCfg is an encrypted ROOT as Fedora CoreOS users write it (Butane's
// boot_device.luks), with luks and fs standing for the entries' fields.
func rootCfg(luks, fs string) string {
	return `{"ignition":{"version":"3.4.0"},"storage":{
"luks":[{"name":"root","device":"/dev/disk/by-partlabel/ROOT",` + luks + `}],
"filesystems":[{"device":"/dev/mapper/root",` + fs + `}]}}`
}

const rootLuksOK = `"label":"luks-root","clevis":{"tpm2":true},"wipeVolume":true`
const rootFSOK = `"format":"ext4","label":"ROOT","wipeFilesystem":true`

// pith validate accepts an encrypted ROOT as Fedora CoreOS users write it
// and refuses what pith-init could not boot from, at its line:col.
func TestIgnitionRootLuks(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []want
	}{
		{"tpm2, ext4 labelled ROOT", rootCfg(rootLuksOK, rootFSOK), nil},
		{"tpm2 and a recovery keyFile, discard, fs by dm-name", strings.Replace(rootCfg(rootLuksOK+`,"keyFile":{"source":"data:,recovery"},"discard":true`, rootFSOK), `"/dev/mapper/root"`, `"/dev/disk/by-id/dm-name-root"`, 1), nil},
		{"keyFile only", rootCfg(`"keyFile":{"source":"data:,k"},"wipeVolume":true`, rootFSOK), []want{{2, 10, E, "Pith unlocks it with the TPM (clevis.tpm2: true)"}}},
		{"tpm2 false", rootCfg(`"clevis":{"tpm2":false},"wipeVolume":true`, rootFSOK), []want{{2, 10, E, "clevis.tpm2: true"}}},
		{"wipeVolume false", rootCfg(`"clevis":{"tpm2":true},"wipeVolume":false`, rootFSOK), []want{{2, 99, E, "wipeVolume must be true"}}},
		{"wipeVolume absent", rootCfg(`"clevis":{"tpm2":true}`, rootFSOK), []want{{2, 10, E, "wipeVolume must be true"}}},
		{"subsystem option", rootCfg(rootLuksOK+`,"options":["--subsystem=x"]`, rootFSOK), []want{{2, 135, E, "--subsystem is set by Pith"}}},
		{"no filesystem on the volume", strings.Replace(rootCfg(rootLuksOK, rootFSOK), `"/dev/mapper/root"`, `"/dev/vdb"`, 1), []want{{2, 10, E, "a volume on ROOT needs a storage.filesystems entry on /dev/mapper/root with format ext4 and label ROOT"}}},
		{"xfs", rootCfg(rootLuksOK, `"format":"xfs","label":"ROOT"`), []want{{3, 54, E, `ROOT's filesystem is ext4 (pith-init checks it with e2fsck and mounts it as /), not "xfs"`}}},
		{"label root", rootCfg(rootLuksOK, `"format":"ext4","label":"root"`), []want{{3, 69, E, "ROOT's filesystem must be labelled ROOT"}}},
		{"no label", rootCfg(rootLuksOK, `"format":"ext4"`), []want{{3, 17, E, "must be labelled ROOT"}}},
		{"a path", rootCfg(rootLuksOK, rootFSOK+`,"path":"/sysroot"`), []want{{3, 105, E, "mounts ROOT's filesystem at / itself: give it no path"}}},
		{"mount options", rootCfg(rootLuksOK, rootFSOK+`,"mountOptions":["noatime"]`), []want{{3, 114, E, "without mount options"}}},
		{"two filesystems on the volume", rootCfg(rootLuksOK, rootFSOK+`},{"device":"/dev/disk/by-id/dm-name-root","format":"ext4","label":"ROOT"`), []want{{3, 109, E, "ROOT's volume /dev/mapper/root already has a filesystem"}}},
		{"two volumes on ROOT", rootCfg(rootLuksOK+`},{"name":"r2","device":"/dev/disk/by-partlabel/ROOT","clevis":{"tpm2":true},"wipeVolume":true`, rootFSOK+`},{"device":"/dev/mapper/r2","format":"ext4","label":"ROOT"`),
			[]want{{2, 147, E, "/dev/disk/by-partlabel/ROOT is already used by volume root"}}},
		{"mkfs on ROOT itself", `{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[{"device":"/dev/disk/by-partlabel/ROOT","format":"ext4","wipeFilesystem":true}]}}`,
			[]want{{1, 69, E, "only a storage.luks entry may name it"}}},
		{"ROOT named by an entry without format (Ignition skips it)", `{"ignition":{"version":"3.4.0"},"storage":{"filesystems":[{"device":"/dev/disk/by-partlabel/ROOT"}]}}`, nil},
		{"ROOT as an array member", `{"ignition":{"version":"3.4.0"},"storage":{"raid":[{"name":"a","level":"raid1","devices":["/dev/disk/by-partlabel/ROOT","/dev/vdc"]}]}}`,
			[]want{{1, 91, E, "/dev/disk/by-partlabel/ROOT is the system's root partition"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkReport(t, Validate([]byte(tc.in)), tc.want)
		})
	}
}

// The plan marks the volume on ROOT and finds its filesystem.
func TestRootVolumePlan(t *testing.T) {
	cfg, rep := ParseIgnition([]byte(rootCfg(rootLuksOK, rootFSOK)))
	if rep.HasErrors() {
		t.Fatal(rep.Err())
	}
	p, err := IgnitionStoragePlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := p.RootVolume()
	if v == nil || v.Name != "root" || !v.TPM2 || !v.Wipe {
		t.Fatalf("RootVolume() = %+v", v)
	}
	for dev, want := range map[string]bool{"/dev/mapper/root": true, LuksDMNamePrefix + "root": true, "/dev/mapper/data": false, RootDevice: false} {
		if got := p.IsRootVolumeFS(dev); got != want {
			t.Errorf("IsRootVolumeFS(%s) = %v, want %v", dev, got, want)
		}
	}
	if got := RootSubsystem(v.Name); got != "pith-root:root" {
		t.Errorf("RootSubsystem = %q", got)
	}
	for sub, want := range map[string]string{"pith-root:root": "root", "pith-root:a.b_c-1": "a.b_c-1", "pith-root:": "", "pith-root:../x": "", "pith-root:" + strings.Repeat("a", 33): "", "crypt:root": "", "": ""} {
		if name, ok := RootVolumeName(sub); name != want && ok || ok != (want != "") {
			t.Errorf("RootVolumeName(%q) = %q, %v; want %q", sub, name, ok, want)
		}
	}
	var none StoragePlan
	if none.RootVolume() != nil || none.IsRootVolumeFS("/dev/mapper/root") {
		t.Error("a plan without a volume on ROOT has one")
	}
}
