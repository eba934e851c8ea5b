package vm

import (
	"runtime"
	"strings"
	"testing"
)

func TestArchArgs(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		qemu     string
		want     [][]string
		notWant  []string
		firmware string
		err      string
	}{
		{name: "amd64 stays q35", cfg: Config{Image: "b.qcow2"}, qemu: "qemu-system-x86_64", firmware: BIOS,
			want: [][]string{{"-machine", "q35"}}, notWant: []string{"AAVMF"}},
		{name: "arm64 is virt with AAVMF under TCG", cfg: Config{Arch: "arm64", Image: "b.qcow2", Accel: Accel{Name: "kvm"}}, qemu: "qemu-system-aarch64", firmware: UEFI,
			want: [][]string{{"-machine", "virt"}, {"-cpu", "max,pauth-impdef=on"}, {"-accel", "tcg"},
				{"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + AAVMFCode},
				{"-drive", "if=virtio,format=qcow2,discard=unmap,file=/s/disk.qcow2"}},
			notWant: []string{"OVMF_CODE", "q35"}},
		{name: "arm64 has no BIOS", cfg: Config{Arch: "arm64", Firmware: BIOS}, err: `firmware "bios": arm64 machines boot UEFI only (AAVMF)`},
		{name: "unknown arch", cfg: Config{Arch: "riscv64"}, err: `arch "riscv64": use amd64 or arm64`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.defaults()
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("defaults: %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOARCH == "arm64" && tt.cfg.Arch == "arm64" {
				t.Skip("on an arm64 host KVM may run the guest")
			}
			if tt.cfg.QEMU != tt.qemu || tt.cfg.Firmware != tt.firmware {
				t.Fatalf("qemu %s firmware %s, want %s %s", tt.cfg.QEMU, tt.cfg.Firmware, tt.qemu, tt.firmware)
			}
			m := &Machine{Config: tt.cfg, Dir: "/s", Disk: "/s/disk.qcow2", QMPSock: "/s/q", SerialSock: "/s/c", SerialLog: "/s/l", Ports: map[int]int{22: 1022}}
			args := m.args("/s/vars.fd", nil)
			for _, w := range tt.want {
				if !hasSeq(args, w...) {
					t.Errorf("missing %q in %q", w, args)
				}
			}
			for _, n := range tt.notWant {
				if strings.Contains(strings.Join(args, " "), n) {
					t.Errorf("unexpected %q in %q", n, args)
				}
			}
		})
	}
}
