package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/ami"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// TestARM64 boots the arm64 image (make image-arm64, which make e2e runs
// first) once, on QEMU's virt board with AAVMF under TCG: the same checks as
// every fresh boot (checkBooted: UEFI, /usr from USR-A through dm-verity
// with the manifest's root hash, ROOT grown), plus an aarch64 kernel, pithd
// running, its KV answering, and the image manifest naming arm64. Without a
// second boot it also builds the arm64 EC2 disk from the same cache and
// checks it as pith ami upload does before uploading (the upload itself,
// naming the AMI arm64 and booting UEFI, runs against the S3/EC2 stand-ins
// in cmd/pith's TestAMIUploadArm64).
func TestARM64(t *testing.T) {
	dir := os.Getenv("PITH_E2E_ARM64_IMAGE_DIR")
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("PITH_E2E_ARM64_IMAGE_DIR is not set: CI must run the VM tests through make e2e")
		}
		t.Skip("PITH_E2E_ARM64_IMAGE_DIR is not set: run make e2e or make e2e-arm64 (they build the arm64 image first)")
	}
	m, err := manifest.Read(filepath.Join(dir, manifest.FileName))
	if err != nil {
		t.Fatalf("%v (run make image-arm64)", err)
	}
	if m.Architecture() != "arm64" {
		t.Fatalf("%s holds an %s image, want arm64", dir, m.Architecture())
	}
	NeedVMs(t, 1, 2*time.Minute)
	const disk = 6 << 30
	c := Boot(t, Options{Image: filepath.Join(dir, "pith.qcow2"), Arch: "arm64", DiskSize: disk})
	n := c.Nodes[0]
	login := n.Up()
	t.Logf("BENCH arm64 boot under %s: login prompt %s, SSH %s after QEMU start", c.Accel.Name, login.Round(time.Second), n.Since().Round(time.Second))
	if got := n.Run("uname -m"); got != "aarch64" {
		t.Errorf("uname -m = %q, want aarch64", got)
	}
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "console=ttyAMA0") {
		t.Errorf("kernel line without the PL011 console: %s", cl)
	}
	checkBooted(t, vm.UEFI, dir, disk, n.sh)
	if got := n.Run("systemctl is-active pithd.service"); got != "active" {
		t.Errorf("pithd.service is %s", got)
	}
	if got := n.Run("curl -fsS http://127.0.0.1:2379/health"); !strings.Contains(got, `"health":"true"`) {
		t.Errorf("KV /health: %s", got)
	}
	if got := n.Run("sudo pithctl kv set /arm64 aarch64 >/dev/null && sudo pithctl kv get /arm64"); got != "aarch64" {
		t.Errorf("KV set/get gave %q", got)
	}
	// e_machine of the ELF header: 0xb7 is EM_AARCH64.
	if got := n.Run("od -An -tx1 -j18 -N2 /usr/bin/pithd"); got != "b7 00" {
		t.Errorf("/usr/bin/pithd has ELF machine %q, want b7 00 (aarch64)", got)
	}

	checkARM64EC2(t, dir)
}

// checkARM64EC2 builds the arm64 image's EC2 platform disk and checks what an
// arm64 AMI needs: the manifest says arm64 and ec2, the disk passes pith ami
// upload's check for UEFI boot (GPT, ESP), and its kernel line has the
// 16550 console Graviton instances have.
func checkARM64EC2(t *testing.T, dir string) {
	img := ec2ImageOf(t, dir)
	m, err := manifest.Read(filepath.Join(filepath.Dir(img), manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if m.Architecture() != "arm64" || m.Platform != "ec2" {
		t.Errorf("arm64 ec2 build: manifest says arch %s, platform %s", m.Architecture(), m.Platform)
	}
	if a, _ := ami.EC2Arch(m.Architecture()); a != "arm64" {
		t.Errorf("EC2 architecture of the arm64 image: %q", a)
	}
	if _, err := ami.CheckImage(img, ami.DefaultBootMode(m.Architecture())); err != nil {
		t.Errorf("the arm64 ec2 disk fails pith ami upload's check: %v", err)
	}
	cfg := espFile(t, img, m, "grub/grub.cfg")
	if !strings.Contains(cfg, "console=ttyS0") || strings.Contains(cfg, "console=ttyAMA0") {
		t.Errorf("arm64 ec2 kernel line without Graviton's ttyS0 console:\n%s", cfg)
	}
}

// espFile reads a file of the raw disk img's ESP with mtools, at the
// partition's offset in m.
func espFile(t *testing.T, img string, m *manifest.Manifest, name string) string {
	t.Helper()
	p, ok := m.Partition(layout.LabelESP)
	if !ok {
		t.Fatalf("%s: the manifest has no %s partition", img, layout.LabelESP)
	}
	return imgTool(t, "mtype", "-i", fmt.Sprintf("%s@@%d", img, p.FirstLBA()*512), "::/"+name)
}
