//go:build e2earm64

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// TestARM64 boots the arm64 image (make image-arm64) once, on QEMU's virt
// board with AAVMF under TCG: the same checks as every fresh boot
// (checkBooted: UEFI, /usr from USR-A through dm-verity with the manifest's
// root hash, ROOT grown), plus an aarch64 kernel, pithd running, its KV
// answering, and the image manifest naming arm64. Outside make e2e, behind
// the e2earm64 build tag (make e2e-arm64), so the suite never skips it
// silently: emulating arm64 costs ~7 minutes of one core and the arm64
// image build ~5 more, over the suite's budget.
func TestARM64(t *testing.T) {
	dir := os.Getenv("PITH_E2E_ARM64_IMAGE_DIR")
	if dir == "" {
		t.Fatal("PITH_E2E_ARM64_IMAGE_DIR is not set: run make e2e-arm64 (it builds the arm64 image first)")
	}
	m, err := manifest.Read(filepath.Join(dir, manifest.FileName))
	if err != nil {
		t.Fatalf("%v (run make image-arm64)", err)
	}
	if m.Architecture() != "arm64" {
		t.Fatalf("%s holds an %s image, want arm64", dir, m.Architecture())
	}
	NeedVMs(t, 1, 12*time.Minute)
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
}
