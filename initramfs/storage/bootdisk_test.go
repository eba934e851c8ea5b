package storage

import (
	"strings"
	"testing"
)

// recordRunner fails every tool and records that it was asked.
type recordRunner struct{ calls []string }

func (r *recordRunner) Run(name string, args ...string) ([]byte, error) {
	r.calls = append(r.calls, name+" "+strings.Join(args, " "))
	return nil, errNoTools
}

type toolErr string

func (e toolErr) Error() string { return string(e) }

const errNoTools = toolErr("no tools in this test")

// A device on the boot disk is refused before any tool runs or any table
// is opened, however it is named; without the boot disk nothing is done.
func TestApplyRefusesBootDisk(t *testing.T) {
	disks := map[string][]string{
		"/dev/vdb":  {"vdb"},
		"/dev/vdb2": {"vdb"},
		"/dev/dm-0": {"vda", "vdb"},
		"/dev/vda1": {"vda"},
	}
	disksOf := func(dev string) ([]string, error) { return disks[dev], nil }
	links := map[string]string{"/dev/disk/by-partlabel/OEM": "/dev/vdb2"}
	resolve := func(dev string) (string, error) {
		if l, ok := links[dev]; ok {
			return l, nil
		}
		return dev, nil
	}
	for _, tc := range []struct {
		name string
		plan *Plan
		boot []string
		want string
	}{
		{"partition of the boot disk", &Plan{Filesystems: []Filesystem{{Device: "/dev/vdb2", Format: "ext4"}}}, []string{"vdb"}, "on the boot disk vdb"},
		{"by-partlabel into the boot disk", &Plan{Filesystems: []Filesystem{{Device: "/dev/disk/by-partlabel/OEM", Format: "ext4"}}}, []string{"vdb"}, "is /dev/vdb2, on the boot disk vdb"},
		{"whole boot disk as filesystem", &Plan{Filesystems: []Filesystem{{Device: "/dev/vdb", Format: "xfs"}}}, []string{"vdb"}, "on the boot disk"},
		{"mapped device over the boot disk", &Plan{Filesystems: []Filesystem{{Device: "/dev/dm-0", Format: "ext4"}}}, []string{"vdb"}, "on the boot disk"},
		{"boot disk partitioned", &Plan{Disks: []Disk{{Device: "/dev/vdb", WipeTable: true}}}, []string{"vda", "vdb"}, "on the boot disk vdb"},
		{"boot disk unknown", &Plan{Filesystems: []Filesystem{{Device: "/dev/vda1", Format: "ext4"}}}, nil, "boot disk is unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recordRunner{}
			env := Env{Root: t.TempDir(), Run: r, Resolve: resolve, BootDisks: tc.boot, DisksOf: disksOf} // no Log: nil discards
			err := Apply(tc.plan, env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply = %v, want %q", err, tc.want)
			}
			if len(r.calls) > 0 {
				t.Errorf("tools ran on a refused device: %v", r.calls)
			}
		})
	}
	// A device on another disk gets as far as the tools.
	r := &recordRunner{}
	env := Env{Root: t.TempDir(), Run: r, Resolve: resolve, BootDisks: []string{"vdb"}, DisksOf: disksOf} // no Log: nil discards
	if err := Apply(&Plan{Filesystems: []Filesystem{{Device: "/dev/vda1", Format: "ext4"}}}, env); err == nil || len(r.calls) == 0 {
		t.Errorf("a device off the boot disk: err %v, tools %v; want blkid to run", err, r.calls)
	}
}
