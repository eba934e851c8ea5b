package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pith-os/pith/atomicfile"

	"golang.org/x/sys/unix"
)

// probeFirmware is a 64 KiB "BIOS" that switches the CPU straight from real
// mode to 64-bit long mode (identity-mapped 2 MiB page), writes 'K' to COM1,
// spins 20 million iterations and writes 'V'. Opening /dev/kvm and creating a
// VM is not enough: on nested or paravirtual KVM hosts (kvm-pvm here) real-mode
// code and even the first long-mode instruction run, but a long-mode loop
// never finishes and a Linux kernel hangs silently. Only a 'V' proves KVM can
// run our guests. Source: testdata/kvmprobe.S (TestProbeFirmwareMatchesSource re-assembles it).
var probeCode = []byte{
	0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0xfc, 0xbf, 0x00, 0x10, 0xb9, 0x00, 0x18, 0xf3, 0xab,
	0x66, 0xc7, 0x06, 0x00, 0x10, 0x03, 0x20, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x20, 0x03, 0x30,
	0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x30, 0x83, 0x00, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x05,
	0x00, 0x00, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x04, 0x05, 0x00, 0x00, 0x00, 0x00, 0x66, 0xc7, 0x06,
	0x08, 0x05, 0xff, 0xff, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x0c, 0x05, 0x00, 0x9b, 0xaf, 0x00, 0xc7,
	0x06, 0x20, 0x05, 0x0f, 0x00, 0x66, 0xc7, 0x06, 0x22, 0x05, 0x00, 0x05, 0x00, 0x00, 0x66, 0x0f,
	0x01, 0x16, 0x20, 0x05, 0x0f, 0x20, 0xe0, 0x66, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0x66, 0xb8,
	0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x66,
	0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x66, 0x0d, 0x01, 0x00, 0x00, 0x80,
	0x0f, 0x22, 0xc0, 0x66, 0xea, 0x9b, 0x00, 0x0f, 0x00, 0x08, 0x00, 0x66, 0xba, 0xf8, 0x03, 0xb0,
	0x4b, 0xee, 0xb9, 0x00, 0x2d, 0x31, 0x01, 0xff, 0xc9, 0x75, 0xfc, 0xb0, 0x56, 0xee, 0xf4, 0xeb,
	0xfd,
}

// probeFirmwareImage returns the 64 KiB firmware image: the code at offset 0
// (mapped at 0xF0000) and a far jump to F000:0000 at the reset vector.
func probeFirmwareImage() []byte {
	img := make([]byte, 64<<10)
	copy(img, probeCode)
	copy(img[0xfff0:], []byte{0xea, 0x00, 0x00, 0x00, 0xf0})
	return img
}

// Accel is the QEMU accelerator a machine runs with, and why.
type Accel struct {
	Name   string // "kvm" or "tcg"
	Reason string // why KVM is not used; empty when it is
}

// Notice is the one line to print when falling back to TCG.
func (a Accel) Notice() string {
	if a.Name == "kvm" {
		return "accel: KVM"
	}
	return "accel: TCG (software emulation, slow): " + a.Reason
}

var (
	probeOnce   sync.Once
	probeResult Accel
)

// ProbeAccel decides between KVM and TCG once per process. PITH_ACCEL=tcg|kvm
// overrides the probe.
func ProbeAccel(ctx context.Context, qemu string) Accel {
	probeOnce.Do(func() { probeResult = probeAccel(ctx, qemu) })
	return probeResult
}

func probeAccel(ctx context.Context, qemu string) Accel {
	switch os.Getenv("PITH_ACCEL") {
	case "tcg":
		return Accel{Name: "tcg", Reason: "PITH_ACCEL=tcg"}
	case "kvm":
		return Accel{Name: "kvm"}
	}
	if err := kvmCreateVM(); err != nil {
		return Accel{Name: "tcg", Reason: err.Error()}
	}
	// The guest probe costs up to 10 s on a host where KVM stalls: its
	// answer is kept until the host reboots or QEMU changes.
	key := probeKey(qemu)
	cache := ""
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "pith", "kvm-probe.json")
	}
	var cached struct {
		Key   string
		Accel Accel
	}
	if cache == "" {
		key = ""
	}
	if b, err := os.ReadFile(cache); key != "" && err == nil && json.Unmarshal(b, &cached) == nil && cached.Key == key {
		return cached.Accel
	}
	a := Accel{Name: "kvm"}
	if err := kvmRunsGuest(ctx, qemu, 10*time.Second); err != nil {
		a = Accel{Name: "tcg", Reason: err.Error()}
	}
	if key != "" && ctx.Err() == nil {
		cached.Key, cached.Accel = key, a
		if b, err := json.Marshal(cached); err == nil && os.MkdirAll(filepath.Dir(cache), 0o755) == nil {
			atomicfile.WriteFile(cache, b, 0o644)
		}
	}
	return a
}

// probeKey identifies this boot of the host and this QEMU binary.
func probeKey(qemu string) string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	path, err := exec.LookPath(qemu)
	if err != nil {
		return ""
	}
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s %s %d %d", strings.TrimSpace(string(boot)), path, st.Size(), st.ModTime().UnixNano())
}

const kvmCreateVMIoctl = 0xAE01 // _IO(KVMIO, 0x01)

// kvmCreateVM opens /dev/kvm and creates (and drops) a VM.
func kvmCreateVM() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("/dev/kvm unusable: %v", err)
	}
	defer f.Close()
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmCreateVMIoctl, 0)
	if errno != 0 {
		return fmt.Errorf("/dev/kvm: KVM_CREATE_VM failed: %v", errno)
	}
	unix.Close(int(fd))
	return nil
}

// kvmRunsGuest boots the probe firmware under KVM and waits for its 'V'.
func kvmRunsGuest(ctx context.Context, qemu string, limit time.Duration) error {
	dir, err := os.MkdirTemp("", "pith-kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fw := filepath.Join(dir, "probe.bin")
	if err := os.WriteFile(fw, probeFirmwareImage(), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var out syncBuffer
	cmd := exec.CommandContext(ctx, qemu, "-accel", "kvm", "-machine", "pc", "-m", "16",
		"-nodefaults", "-display", "none", "-bios", fw, "-serial", "stdio")
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("probe: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			if strings.Contains(out.String(), "KV") {
				return nil
			}
			return fmt.Errorf("KVM probe guest did not run: %s", firstLine(out.String()))
		case <-tick.C:
			if strings.Contains(out.String(), "KV") {
				cmd.Process.Kill()
				<-done
				return nil
			}
		}
		if ctx.Err() != nil {
			<-done
			if strings.Contains(out.String(), "K") {
				return fmt.Errorf("/dev/kvm opens but a long-mode guest stalls (nested or paravirtual KVM)")
			}
			return fmt.Errorf("/dev/kvm opens but a guest never ran within %s", limit)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for QEMU's output goroutine and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return "no output"
	}
	return s
}
