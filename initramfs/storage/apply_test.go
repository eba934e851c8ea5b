package storage

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// hostRunner runs the build machine's tools (the init runs the USR's).
type hostRunner struct{}

func (hostRunner) Run(name string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// loopDisk attaches a sparse file of size as a loop device with
// partition scanning, as a second virtio disk would be.
func loopDisk(t *testing.T, size string) string {
	t.Helper()
	// Never skipped silently in CI (CI=true): there the run must have
	// root and the tools.
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("needs root for a loop device (run go test as root)")
	}
	for _, tool := range []string{"losetup", "sgdisk", "blkid", "mkfs.ext4", "mkswap", "e2fsck", "wipefs"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip("%s is not installed", tool)
		}
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	run(t, "truncate", "-s", size, img)
	dev := strings.TrimSpace(run(t, "losetup", "-f", "--show", "-P", img))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// partitionLoop stands in for the kernel's partition node (this build
// machine's kernel shows no partitions of loop devices): a loop device
// over partition n of disk, where sgdisk says it is.
func partitionLoop(t *testing.T, disk string, n int) string {
	info := run(t, "sgdisk", "-i", strconv.Itoa(n), disk)
	first := regexp.MustCompile(`First sector: (\d+)`).FindStringSubmatch(info)
	size := regexp.MustCompile(`Partition size: (\d+) sectors`).FindStringSubmatch(info)
	if first == nil || size == nil {
		t.Fatalf("sgdisk -i %d %s:\n%s", n, disk, info)
	}
	start, _ := strconv.ParseInt(first[1], 10, 64)
	sectors, _ := strconv.ParseInt(size[1], 10, 64)
	dev := strings.TrimSpace(run(t, "losetup", "-f", "--show", "-o", strconv.FormatInt(start*512, 10), "--sizelimit", strconv.FormatInt(sectors*512, 10), disk))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestApplyLoop applies a plan to a real block device: the GPT is checked
// by sgdisk, the filesystems by blkid and e2fsck, and a second Apply of
// the same plan keeps everything (Ignition's idempotence).
func TestApplyLoop(t *testing.T) {
	dev := loopDisk(t, "256M")
	plan := &Plan{
		Disks: []Disk{{Device: dev, WipeTable: true, Partitions: []Partition{
			{Label: sp("data"), SizeMiB: ip(160), ShouldExist: true},
			{Label: sp("swap"), TypeGUID: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", ShouldExist: true},
		}}},
		Filesystems: []Filesystem{
			{Device: dev + "p1", Format: "ext4", Label: "docker", Path: "/var/lib/docker", MountOptions: []string{"noatime"}},
			{Device: dev + "p2", Format: "swap", Label: "swap"},
		},
	}
	root := t.TempDir()
	var log bytes.Buffer
	parts := map[string]string{}
	resolve := func(d string) (string, error) {
		if d == dev {
			return dev, nil
		}
		if parts[d] == "" {
			parts[d] = partitionLoop(t, dev, int(d[len(d)-1]-'0'))
		}
		return parts[d], nil
	}
	// Every device here lies on the loop disk; the boot disk is elsewhere.
	disksOf := func(string) ([]string, error) { return []string{filepath.Base(dev)}, nil }
	env := Env{Root: root, Run: hostRunner{}, Resolve: resolve, BootDisks: []string{"not-" + filepath.Base(dev)}, DisksOf: disksOf, Log: slog.New(slog.NewTextHandler(&log, nil))}
	if err := Apply(plan, env); err != nil {
		t.Fatalf("%v\n%s", err, &log)
	}
	t.Logf("%s", &log)
	for _, want := range []string{`msg="partition created" disk=` + dev + ` number=1 label=data size_mib=160 start_mib=1`, `msg="filesystem made" device=` + dev + `p1 format=ext4 label=docker`, `msg="wrote unit" unit=var-lib-docker.mount`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	part1, part2 := parts[dev+"p1"], parts[dev+"p2"]
	gpt := run(t, "sgdisk", "-v", dev)
	if !strings.Contains(gpt, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", gpt)
	}
	p := run(t, "sgdisk", "-p", dev)
	for _, want := range []string{"1            2048          329727   160.0 MiB   8300  data", "2          329728          524254"} {
		if !strings.Contains(p, want) {
			t.Errorf("sgdisk -p lacks %q:\n%s", want, p)
		}
	}
	if got := strings.TrimSpace(run(t, "blkid", "-p", "-s", "TYPE", "-s", "LABEL", "-o", "value", part1)); got != "docker\next4" && got != "ext4\ndocker" {
		t.Errorf("blkid p1: %q", got)
	}
	if got := strings.TrimSpace(run(t, "blkid", "-p", "-s", "TYPE", "-o", "value", part2)); got != "swap" {
		t.Errorf("blkid p2: %q", got)
	}
	run(t, "e2fsck", "-n", "-f", part1)
	uuid := strings.TrimSpace(run(t, "blkid", "-p", "-s", "UUID", "-o", "value", part1))
	unit, err := os.ReadFile(filepath.Join(root, UnitDir, "var-lib-docker.mount"))
	if err != nil || !strings.Contains(string(unit), "What=/dev/disk/by-uuid/"+uuid+"\n") || !strings.Contains(string(unit), "Options=noatime\n") {
		t.Errorf("mount unit (%v):\n%s", err, unit)
	}
	if l, err := os.Readlink(filepath.Join(root, UnitDir, "local-fs.target.requires", "var-lib-docker.mount")); err != nil || l != "../var-lib-docker.mount" {
		t.Errorf("local-fs.target.requires link: %q, %v", l, err)
	}
	swaps, _ := filepath.Glob(filepath.Join(root, UnitDir, "swap.target.requires", "*.swap"))
	if len(swaps) != 1 {
		t.Errorf("swap units enabled: %v", swaps)
	}

	// The same plan again, without wipeTable: partitions and filesystems
	// exist as asked and are kept, so the UUID stays.
	plan.Disks[0].WipeTable = false
	log.Reset()
	if err := Apply(plan, env); err != nil {
		t.Fatalf("second apply: %v\n%s", err, &log)
	}
	for _, want := range []string{`msg="partition kept, as wanted" disk=` + dev + ` number=1 label=data`, `msg="filesystem kept" device=` + dev + `p1 format=ext4`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the second apply's log lacks %q:\n%s", want, &log)
		}
	}
	if got := strings.TrimSpace(run(t, "blkid", "-p", "-s", "UUID", "-o", "value", part1)); got != uuid {
		t.Errorf("second apply re-made the filesystem: UUID %s -> %s", uuid, got)
	}
	// A filesystem of another format without wipeFilesystem fails closed
	// and leaves the device alone.
	bad := &Plan{Filesystems: []Filesystem{{Device: dev + "p1", Format: "swap"}}}
	if err := Apply(bad, env); err == nil || !strings.Contains(err.Error(), "set wipeFilesystem") {
		t.Errorf("swap over ext4 without wipe: %v", err)
	}
	if got := strings.TrimSpace(run(t, "blkid", "-p", "-s", "UUID", "-o", "value", part1)); got != uuid {
		t.Errorf("refused apply changed p1: UUID %s -> %s", uuid, got)
	}
}
