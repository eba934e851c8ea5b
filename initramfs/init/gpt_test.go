package pithinit

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const (
	testUsrUUID  = "11111111-2222-3333-4444-555555555555"
	testRootUUID = "99999999-8888-7777-6666-555555555555"
	testEFIUUID  = "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"
)

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeDisk writes a GPT disk image the way the image builder lays one out
// (EFI-SYSTEM, USR-A with gptprio bits, ROOT last), with sgdisk.
func makeDisk(t *testing.T, size string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	runCmd(t, "truncate", "-s", size, p)
	runCmd(t, "sgdisk", "-o",
		"-n", "1:1M:+4M", "-t", "1:C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "-c", "1:EFI-SYSTEM", "-u", "1:"+testEFIUUID,
		"-n", "3:5M:+8M", "-t", "3:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6", "-c", "3:USR-A", "-u", "3:"+testUsrUUID,
		"-A", "3:set:48", "-A", "3:set:56",
		"-n", "9:13M:0", "-t", "9:3884DD41-8582-4404-B9A8-E9B84F2DF50E", "-c", "9:ROOT", "-u", "9:"+testRootUUID,
		p)
	return p
}

func sgdiskField(t *testing.T, disk string, part int, re string) string {
	t.Helper()
	out := runCmd(t, "sgdisk", "-i", strconv.Itoa(part), disk)
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("sgdisk -i %d: no %q in\n%s", part, re, out)
	}
	return m[1]
}

func readTable(t *testing.T, disk string) *Table {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := ReadGPT(f, 512)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestReadGPTMatchesSgdisk(t *testing.T) {
	disk := makeDisk(t, "64M")
	tab := readTable(t, disk)
	if len(tab.Partitions) != 3 {
		t.Fatalf("got %d partitions, want 3", len(tab.Partitions))
	}
	for _, p := range tab.Partitions {
		n := p.Number
		if got := sgdiskField(t, disk, n, `Partition unique GUID: (\S+)`); got != p.UUID.String() {
			t.Errorf("partition %d UUID %s, sgdisk says %s", n, p.UUID, got)
		}
		if got := sgdiskField(t, disk, n, `First sector: (\d+)`); got != strconv.FormatUint(p.FirstLBA, 10) {
			t.Errorf("partition %d first LBA %d, sgdisk says %s", n, p.FirstLBA, got)
		}
		if got := sgdiskField(t, disk, n, `Last sector: (\d+)`); got != strconv.FormatUint(p.LastLBA, 10) {
			t.Errorf("partition %d last LBA %d, sgdisk says %s", n, p.LastLBA, got)
		}
		if got := sgdiskField(t, disk, n, `Partition name: '([^']*)'`); got != p.Name {
			t.Errorf("partition %d name %q, sgdisk says %q", n, p.Name, got)
		}
	}
	usr, _ := tab.Find(Spec{Kind: "PARTLABEL", Value: "USR-A"})
	if usr.Attributes != 1<<48|1<<56 {
		t.Errorf("USR-A attributes %#x, want priority 1 + successful", usr.Attributes)
	}
}

func TestFind(t *testing.T) {
	tab := readTable(t, makeDisk(t, "64M"))
	tests := []struct {
		spec string
		want int
	}{
		{"PARTUUID=" + strings.ToLower(testUsrUUID), 3},
		{"PARTUUID=" + testRootUUID, 9},
		{"PARTLABEL=EFI-SYSTEM", 1},
		{"PARTUUID=00000000-0000-0000-0000-000000000001", 0},
		{"PARTLABEL=USR-B", 0},
	}
	for _, tt := range tests {
		s, err := parseSpec("pith.usr", tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := tab.Find(s)
		if ok != (tt.want != 0) || p.Number != tt.want {
			t.Errorf("Find(%s) = %d, %v; want %d", tt.spec, p.Number, ok, tt.want)
		}
	}
}

func TestReadGPTRejectsCorruption(t *testing.T) {
	disk := makeDisk(t, "64M")
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Flip a byte in the first entry (the EFI partition's name).
	if _, err := f.WriteAt([]byte{'X'}, 1024+60); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadGPT(f, 512); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Errorf("err = %v, want a CRC mismatch", err)
	}
	if _, err := ReadGPT(f, 4096); err != errNoGPT {
		t.Errorf("with the wrong sector size: err = %v, want %v", err, errNoGPT)
	}
}

func TestGrowOnImage(t *testing.T) {
	disk := makeDisk(t, "64M")
	oldUsrLast := sgdiskField(t, disk, 3, `Last sector: (\d+)`)
	runCmd(t, "truncate", "-s", "100M", disk) // the disk grew, as on first boot of a bigger VM
	tab := readTable(t, disk)
	plan, err := tab.PlanGrow(9, 100<<20)
	if err != nil {
		t.Fatal(err)
	}
	sectors := uint64(100 << 20 / 512)
	if !plan.GrowsPartition || !plan.MovesBackup {
		t.Fatalf("plan %+v: want the partition grown and the backup moved", plan)
	}
	if plan.BackupLBA != sectors-1 || plan.BackupEntriesLBA != sectors-1-32 || plan.LastUsable != sectors-34 {
		t.Errorf("backup at %d, entries at %d, last usable %d; want %d, %d, %d",
			plan.BackupLBA, plan.BackupEntriesLBA, plan.LastUsable, sectors-1, sectors-33, sectors-34)
	}
	if (plan.NewLast+1)%2048 != 0 || plan.NewLast > plan.LastUsable || plan.LastUsable-plan.NewLast >= 2048 {
		t.Errorf("new last LBA %d: want the last 1 MiB boundary before %d", plan.NewLast, plan.LastUsable)
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Apply(f, plan); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if out := runCmd(t, "sgdisk", "-v", disk); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v after grow:\n%s", out)
	}
	if got := sgdiskField(t, disk, 9, `Last sector: (\d+)`); got != strconv.FormatUint(plan.NewLast, 10) {
		t.Errorf("ROOT last sector %s, want %d", got, plan.NewLast)
	}
	if got := sgdiskField(t, disk, 3, `Last sector: (\d+)`); got != oldUsrLast {
		t.Errorf("USR-A last sector changed: %s -> %s", oldUsrLast, got)
	}
	tab = readTable(t, disk)
	if usr, _ := tab.Find(Spec{Kind: "PARTLABEL", Value: "USR-A"}); usr.Attributes != 1<<48|1<<56 {
		t.Errorf("USR-A attributes %#x lost in the rewrite", usr.Attributes)
	}
	mbr, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(mbr[446+12:]); uint64(got) != sectors-1 {
		t.Errorf("protective MBR covers %d sectors, want %d", got, sectors-1)
	}

	// Second boot: nothing left to do.
	again, err := tab.PlanGrow(9, 100<<20)
	if err != nil {
		t.Fatal(err)
	}
	if again.GrowsPartition || again.MovesBackup {
		t.Errorf("second plan %+v: want nothing to do", again)
	}
}

func TestPlanGrowErrors(t *testing.T) {
	tab := readTable(t, makeDisk(t, "64M"))
	if _, err := tab.PlanGrow(3, 64<<20); err == nil || !strings.Contains(err.Error(), "not the last") {
		t.Errorf("growing USR-A: err = %v, want 'not the last'", err)
	}
	if _, err := tab.PlanGrow(4, 64<<20); err == nil || !strings.Contains(err.Error(), "not in the GPT") {
		t.Errorf("growing a missing partition: err = %v", err)
	}
	if _, err := tab.PlanGrow(9, 32<<20); err == nil || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("disk smaller than its GPT: err = %v", err)
	}
	p, err := tab.PlanGrow(9, 64<<20)
	if err != nil || p.GrowsPartition || p.MovesBackup {
		t.Errorf("same-size disk: plan %+v err %v, want nothing to do", p, err)
	}
}
