package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/slot"
	"github.com/pith-os/pith/initramfs/verity"
)

// newDiskImage makes a GPT disk image with sgdisk (USR-A good, USR-B
// empty), an "ESP" directory with grub/grubenv (as the image has it), and a kernel command line.
func newDiskImage(t *testing.T, running string) *DiskSlots {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatal("sgdisk not installed: run hack/install-deps.sh (make deps)")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 40<<20)
	out, err := exec.Command("sgdisk", "-o",
		"-n", "1:2048:+4M", "-c", "1:EFI-SYSTEM", "-t", "1:EF00",
		"-n", "3:0:+8M", "-c", "3:USR-A", "-t", "3:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6",
		"-n", "4:0:+8M", "-c", "4:USR-B", "-t", "4:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6",
		img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	if err := slot.WritePrio(img, slot.A, slot.Prio{Priority: 1, Successful: true}); err != nil {
		t.Fatal(err)
	}
	esp := filepath.Join(dir, "esp")
	os.MkdirAll(filepath.Join(esp, "pith"), 0o755)
	os.MkdirAll(filepath.Join(esp, "grub"), 0o755)
	if err := slot.WriteEnvFile(filepath.Join(esp, slot.EnvPathOnESP), slot.InitialEnv()); err != nil {
		t.Fatal(err)
	}
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("console=ttyS0 pith.slot="+running+" pith.usr=PARTUUID=x quiet\n"), 0o644)
	return &DiskSlots{Disk: img, ESP: esp, Cmdline: cmdline}
}

// TestAgentOnDiskImage runs an update through the real slot mechanism on a
// GPT disk image: USR-B gets the payload at its partition offset, the GPT
// and grubenv show a trial of b, and after the "reboot" b is marked good.
func TestAgentOnDiskImage(t *testing.T) {
	cs := newChannelServer(t)
	r := publishVerity(t, cs, "1.1.0", 10, false)
	ds := newDiskImage(t, "a")
	if s, err := ds.Running(); err != nil || s != "a" {
		t.Fatalf("running %q %v", s, err)
	}
	tgt, err := ds.USRTarget("b")
	if err != nil {
		t.Fatal(err)
	}
	if tgt.Offset != (2048+4*2048+8*2048)*512 || tgt.Limit != 8<<20 {
		t.Fatalf("USR-B target %+v", tgt)
	}
	state := t.TempDir()
	rb := &fakeReboot{}
	a := cs.agent(t, state, "m1", "1.0.0", ds, rb, nil, StrategyReboot)
	if err := a.CheckOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	img, _ := os.ReadFile(ds.Disk)
	if !bytes.Equal(img[tgt.Offset:tgt.Offset+int64(len(r.usr))], r.usr) {
		t.Fatal("USR-B does not hold the payload")
	}
	if k, _ := os.ReadFile(ds.KernelPath("b")); !bytes.Equal(k, r.kernel) {
		t.Fatal("ESP kernel b differs")
	}
	if cfg, err := os.ReadFile(ds.verityPath("b")); err != nil || !bytes.Contains(cfg, []byte("set pith_usrhash="+r.root+"\n")) {
		t.Fatalf("ESP %s: %q, %v; want root hash %s", bootloader.VerityCfgPath("b"), cfg, err, r.root)
	}
	st, err := slot.Status(ds.Disk, ds.envPath())
	if err != nil {
		t.Fatal(err)
	}
	if st.Next != "b" || st.Parts[slot.B].Tries != 1 || st.Parts[slot.B].Successful || st.Default() != slot.B {
		t.Fatalf("after apply: %+v", st)
	}
	// sgdisk agrees the GPT is intact after our writes.
	if out, err := exec.Command("sgdisk", "-v", ds.Disk).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("No problems found")) {
		t.Fatalf("sgdisk -v: %v\n%s", err, out)
	}
	// Reboot into b.
	os.WriteFile(ds.Cmdline, []byte("pith.slot=b\n"), 0o644)
	a = cs.agent(t, state, "m1", "1.1.0", ds, rb, nil, StrategyReboot)
	if err := a.AfterBoot(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ = slot.Status(ds.Disk, ds.envPath())
	if st.Saved != "b" || st.Next != "" || !st.Parts[slot.B].Successful {
		t.Fatalf("after mark good: %+v", st)
	}
}

// verityRelease is a release whose USR carries a dm-verity tree.
type verityRelease struct {
	release
	root string
}

// publishVerity publishes a USR that looks like a squashfs (its magic and
// bytes_used) followed by its hash tree, signed with the root hash, or
// with another root hash (a release whose USR does not match it).
func publishVerity(t *testing.T, cs *channelServer, version string, seed int64, wrongRoot bool) verityRelease {
	t.Helper()
	const fsSize = 1 << 20
	f, err := os.Create(filepath.Join(t.TempDir(), "usr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fs := data(seed, fsSize)
	copy(fs, "hsqs")
	binary.LittleEndian.PutUint64(fs[40:], fsSize)
	f.Write(fs)
	root, err := verity.Format(f, fsSize, []byte("salt"), [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	usr, _ := os.ReadFile(f.Name())
	r := verityRelease{release{usr: usr, kernel: data(seed+1, 200<<10), initrd: data(seed+2, 300<<10)}, root}
	signed := root
	if wrongRoot {
		signed = strings.Repeat("ab", 32)
	}
	src := func(name, file string, b []byte) channels.PayloadSource {
		return channels.PayloadSource{Name: name, File: file, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
	}
	_, err = channels.Publish(cs.dir, channels.Release{Channel: "stable", Version: version, Platform: "linux/amd64", USRVerityHash: signed,
		Payloads: []channels.PayloadSource{src("usr", "usr", r.usr), src("kernel", "vmlinuz", r.kernel), src("initrd", "initrd", r.initrd)},
	}, []ed25519.PrivateKey{cs.key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs.rel[version] = r.release
	return r
}

// A written slot that does not match the signed root hash (or a release
// without one) never gets a boot entry hash nor a trial.
func TestAgentRefusesUnverifiableSlot(t *testing.T) {
	for _, tc := range []struct {
		name string
		pub  func(*channelServer)
		want string
	}{
		{"root hash not the USR's", func(cs *channelServer) { publishVerity(t, cs, "1.1.0", 20, true) }, "does not match the signed dm-verity root hash"},
		{"no root hash in the release", func(cs *channelServer) { cs.publish(t, "1.1.0", 20) }, "no dm-verity root hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := newChannelServer(t)
			tc.pub(cs)
			ds := newDiskImage(t, "a")
			a := cs.agent(t, t.TempDir(), "m1", "1.0.0", ds, &fakeReboot{}, nil, StrategyReboot)
			if err := a.CheckOnce(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckOnce = %v, want an error containing %q", err, tc.want)
			}
			if _, err := os.Stat(ds.verityPath("b")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s exists after a refused slot (%v)", bootloader.VerityCfgPath("b"), err)
			}
			st, _ := slot.Status(ds.Disk, ds.envPath())
			if st.Next != "" || st.Parts[slot.B].Tries != 0 || st.Default() != slot.A {
				t.Errorf("a trial was armed: %+v", st)
			}
		})
	}
}

func TestDiskSlotsSetVerityAndInvalidate(t *testing.T) {
	cs := newChannelServer(t)
	r := publishVerity(t, cs, "1.1.0", 30, false)
	ds := newDiskImage(t, "a")
	tgt, err := ds.USRTarget("b")
	if err != nil {
		t.Fatal(err)
	}
	img, _ := os.OpenFile(ds.Disk, os.O_RDWR, 0)
	defer img.Close()
	img.WriteAt(r.usr, tgt.Offset)
	for _, bad := range []string{"", strings.ToUpper(r.root), strings.Repeat("ab", 32)} {
		if err := ds.SetVerity("b", bad); err == nil {
			t.Errorf("SetVerity(%q) accepted", bad)
		}
	}
	if err := ds.SetVerity("b", r.root); err != nil {
		t.Fatal(err)
	}
	// One byte changed in the written slot: refused, as the kernel would.
	img.WriteAt([]byte{r.usr[5000] ^ 1}, tgt.Offset+5000)
	if err := ds.SetVerity("b", r.root); !errors.Is(err, verity.ErrCorrupt) {
		t.Errorf("SetVerity on a changed slot: %v, want verity.ErrCorrupt", err)
	}
	if err := ds.Invalidate("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ds.verityPath("b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Invalidate left %s (%v): GRUB could fall back to a slot being written", bootloader.VerityCfgPath("b"), err)
	}
}

func TestDiskSlotsInvalidateDropsTrial(t *testing.T) {
	ds := newDiskImage(t, "a")
	if err := ds.SetTrial("b"); err != nil {
		t.Fatal(err)
	}
	if err := ds.Invalidate("b"); err != nil {
		t.Fatal(err)
	}
	st, _ := slot.Status(ds.Disk, ds.envPath())
	if st.Next != "" || st.Parts[slot.B].Priority != 0 || st.Parts[slot.B].Tries != 0 || st.Default() != slot.A {
		t.Fatalf("after invalidate: %+v", st)
	}
	os.WriteFile(ds.Cmdline, []byte("quiet\n"), 0o644)
	if _, err := ds.Running(); err == nil {
		t.Fatal("no pith.slot= accepted")
	}
}

// cancelAtWrite cancels the agent's context once the slot is about to be
// written: the "machine" dies mid-update.
type cancelAtWrite struct {
	*DiskSlots
	cancel context.CancelFunc
}

func (c *cancelAtWrite) USRTarget(s string) (channels.Target, error) {
	t, err := c.DiskSlots.USRTarget(s)
	c.cancel()
	return t, err
}

// TestAgentDiesMidWrite: an update interrupted while writing the slot
// leaves a disk that boots the old slot, and the next run completes it.
func TestAgentDiesMidWrite(t *testing.T) {
	cs := newChannelServer(t)
	publishVerity(t, cs, "1.1.0", 10, false)
	ds := newDiskImage(t, "a")
	// As if an earlier attempt had got as far as a trial of b.
	if err := ds.SetTrial("b"); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	rb := &fakeReboot{}
	a := cs.agent(t, state, "m1", "1.0.0", &cancelAtWrite{ds, cancel}, rb, nil, StrategyReboot)
	if err := a.CheckOnce(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted update: %v", err)
	}
	st, err := slot.Status(ds.Disk, ds.envPath())
	if err != nil {
		t.Fatal(err)
	}
	if st.Default() != slot.A || st.Next != "" || st.Parts[slot.B].Priority != 0 || st.Parts[slot.B].Tries != 0 {
		t.Fatalf("after dying mid-write the disk would not boot slot a: %+v", st)
	}
	if rb.count() != 0 || a.Status().Pending != nil {
		t.Fatalf("reboot %d, pending %+v after an interrupted write", rb.count(), a.Status().Pending)
	}
	// Next start: the update completes.
	a = cs.agent(t, state, "m1", "1.0.0", ds, rb, nil, StrategyReboot)
	if err := a.CheckOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := slot.Status(ds.Disk, ds.envPath()); st.Next != "b" || rb.count() != 1 {
		t.Fatalf("second run: %+v, reboots %d", st, rb.count())
	}
}
