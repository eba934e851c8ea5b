package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/slot"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func TestWrite(t *testing.T) {
	for _, tool := range []string{"sgdisk", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: run make deps", tool)
		}
	}
	dir := t.TempDir()
	tb, err := layout.New(3*layout.GiB, "test")
	if err != nil {
		t.Fatal(err)
	}
	// USR-A content: 3 MiB with a 1 MiB zero hole in the middle.
	usr := append(bytes.Repeat([]byte{0xAB}, 1<<20), make([]byte, 1<<20)...)
	usr = append(usr, bytes.Repeat([]byte{0xCD}, 1<<20)...)
	usrPath := filepath.Join(dir, "usr")
	os.WriteFile(usrPath, usr, 0o644)
	boot := bytes.Repeat([]byte{0xEB}, 440)
	aAttr, _ := slot.InitialA.Apply(0)
	var lastDone, lastTotal int64
	img := filepath.Join(dir, "pith.img")
	written, err := Write(context.Background(), img, Options{
		Table: tb,
		Contents: []Content{
			{Label: layout.LabelUSRA, Path: usrPath},
			{Label: layout.LabelOEM, Data: []byte("oem")},
		},
		Attributes: map[string]uint64{layout.LabelUSRA: aAttr},
		BootCode:   boot,
		Progress:   func(d, tot int64) { lastDone, lastTotal = d, tot },
	})
	if err != nil {
		t.Fatal(err)
	}
	if lastDone != int64(len(usr))+3 || lastTotal != lastDone {
		t.Errorf("progress ended at %d/%d", lastDone, lastTotal)
	}
	sum := sha256.Sum256(usr)
	if written[0].Size != int64(len(usr)) || written[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("written %+v", written[0])
	}

	// sgdisk reads the table: numbers with gaps, labels, types, GUIDs.
	p := run(t, "sgdisk", "-p", img)
	for _, part := range tb.Partitions {
		info := run(t, "sgdisk", "-i", itoa(part.Number), img)
		for _, want := range []string{part.Type, "Partition unique GUID: " + part.GUID, "First sector: " + itoa64(int64(part.FirstLBA())), "Partition name: '" + part.Label + "'"} {
			if !strings.Contains(info, want) {
				t.Errorf("sgdisk -i %d lacks %q:\n%s", part.Number, want, info)
			}
		}
	}
	if strings.Count(p, "\n   ") < 6 || strings.Contains(p, "\n   5 ") {
		t.Errorf("sgdisk -p:\n%s", p)
	}
	if v := run(t, "sgdisk", "-v", img); !strings.Contains(v, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", v)
	}
	parts, err := slot.ReadParts(img)
	if err != nil || parts[slot.A].Prio != slot.InitialA || parts[slot.B].Prio != slot.InitialB {
		t.Errorf("slots %+v %v", parts, err)
	}

	raw, _ := os.ReadFile(img)
	if !bytes.Equal(raw[:440], boot) || raw[510] != 0x55 || raw[511] != 0xAA || raw[450] != 0xEE {
		t.Error("MBR: boot code or protective entry wrong")
	}
	a := tb.MustLabel(layout.LabelUSRA)
	if !bytes.Equal(raw[a.Start:a.Start+int64(len(usr))], usr) {
		t.Error("USR-A content not at its partition")
	}
	oem := tb.MustLabel(layout.LabelOEM)
	if string(raw[oem.Start:oem.Start+3]) != "oem" {
		t.Error("OEM content not at its partition")
	}
	// Sparse: the zero MiB of USR-A and the empty space are holes.
	var st syscall.Stat_t
	syscall.Stat(img, &st)
	if alloc := st.Blocks * 512; alloc > 3<<20 {
		t.Errorf("%d bytes allocated for 2 MiB of non-zero content", alloc)
	}

	// qcow2: clean, same content, same bytes on a second conversion.
	q1, q2 := filepath.Join(dir, "1.qcow2"), filepath.Join(dir, "2.qcow2")
	var pct float64
	if err := Qcow2(context.Background(), img, q1, func(p float64) { pct = p }); err != nil {
		t.Fatal(err)
	}
	if err := Qcow2(context.Background(), img, q2, nil); err != nil {
		t.Fatal(err)
	}
	if pct != 100 {
		t.Errorf("qcow2 progress ended at %v%%", pct)
	}
	run(t, "qemu-img", "check", q1)
	if info := run(t, "qemu-img", "info", q1); !strings.Contains(info, "compression type: zstd") {
		t.Errorf("qcow2 not zstd-compressed:\n%s", info)
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", img, q1)
	b1, _ := os.ReadFile(q1)
	b2, _ := os.ReadFile(q2)
	if !bytes.Equal(b1, b2) {
		t.Error("qcow2 conversion not reproducible")
	}
}

func TestWriteRejects(t *testing.T) {
	tb, _ := layout.New(3*layout.GiB, "test")
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	f, _ := os.Create(big)
	f.Truncate(layout.GiB + 4096)
	f.Close()
	_, err := Write(context.Background(), filepath.Join(dir, "img"), Options{Table: tb, Contents: []Content{{Label: layout.LabelUSRA, Path: big}}})
	if err == nil || !strings.Contains(err.Error(), "USR-A content is") {
		t.Errorf("oversized USR-A: %v", err)
	}
	_, err = Write(context.Background(), filepath.Join(dir, "img"), Options{Table: tb, BootCode: make([]byte, 446)})
	if err == nil {
		t.Error("446-byte boot code accepted")
	}
}

func itoa(n int) string     { return strconv.Itoa(n) }
func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
