package e2e

// Issue 18: the live ISO installs Pith unattended. pith.iso boots (BIOS)
// with an empty virtio disk; its user-data's pith.install section has the
// live system install the image (served from the host, zstd-compressed)
// with a second user-data; QEMU powers off; the disk then boots alone and
// applies the second user-data from its OEM partition. Under UEFI the ISO
// boots to the live system. The PXE files boot a machine with an empty
// disk through its NIC's iPXE ROM to the live system's SSH, where pith
// install refuses bad inputs and is timed against dd (install_pxe_test.go).

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/image/live"
	"github.com/pith-os/pith/vm"
)

// installGuestServer is where the live system fetches the image.
const installGuestServer = "10.0.2.100:8080"

const installedUserData = `#cloud-config
write_files:
  - path: /etc/pith-installed
    content: "installed from pith.iso\n"
`

// TestInstallFromISO installs under BIOS; under UEFI it boots pith.iso's
// second El Torito entry to the live system's login prompt only (the
// installed disk's UEFI path is TestEC2's): a whole UEFI install is
// installFromISO(t, iso, vm.UEFI), ~10 more TCG minutes than the suite has.
func TestInstallFromISO(t *testing.T) {
	// Parallel, so its subtests wait for a VM slot with the other VM tests
	// instead of running alone in go test's sequential phase.
	t.Parallel()
	bootImagePath(t) // skips (or fails in CI) without a built image
	iso := buildISO(t)
	t.Run(vm.BIOS, func(t *testing.T) { installFromISO(t, iso, vm.BIOS) })
	t.Run(vm.UEFI+"-live", func(t *testing.T) { liveBoot(t, iso, vm.UEFI) })
	t.Run("pxe-live", pxeBoot)
}

// buildISO makes pith.iso from the suite's image with pith live.
func buildISO(t *testing.T) string {
	work := t.TempDir()
	start := time.Now()
	updPith(t, "live", "--image-dir", os.Getenv("PITH_E2E_IMAGE_DIR"), "--out", work, "--formats", "iso")
	iso := filepath.Join(work, "pith.iso")
	st, err := os.Stat(iso)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCH pith live: pith.iso %.1f MiB in %s", float64(st.Size())/(1<<20), time.Since(start).Round(100*time.Millisecond))
	if st.Size() > 250<<20 {
		t.Errorf("pith.iso is %d MiB, over the 250 MiB target", st.Size()>>20)
	}
	return iso
}

// liveBoot boots iso with firmware fw and an empty disk, with no
// user-data, up to the live system's login prompt.
func liveBoot(t *testing.T, iso, fw string) {
	NeedVMs(t, 1, 3*time.Minute)
	empty := filepath.Join(t.TempDir(), "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", empty, "6G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	n := Boot(t, Options{Image: empty, CDROM: iso, Firmware: fw, MemoryMiB: 2048}).Nodes[0]
	_, up := n.WaitConsole("live: ROOT is a tmpfs")
	t.Logf("BENCH live boot (%s): init running from the ISO at %s", fw, up.Round(time.Second))
	_, up = n.WaitConsole(LoginMarker)
	t.Logf("BENCH live boot (%s): login prompt at %s", fw, up.Round(time.Second))
}

// pxeBoot boots the PXE files (pith live --formats pxe) on a machine whose
// only disk is empty, as README's PXE section serves them: QEMU's own
// DHCP/TFTP gives the iPXE ROM boot.ipxe, which chains pith-pxe.ipxe over
// HTTP from a host server (through a guestfwd); iPXE fetches the kernel and
// the ~200 MB initrd the script names relative to its URL from there too
// (QEMU's TFTP takes minutes for them: make pxe-boot). The live system
// must answer SSH with the key from its fw_cfg meta-data and run from RAM,
// /usr verified; then sudo pithctl install must refuse bad inputs without
// touching the disk (checkInstallRefusals; make bench-install also
// refuses a corrupt image and times an install against dd).
func pxeBoot(t *testing.T) {
	NeedVMs(t, 1, 3*time.Minute)
	work := t.TempDir()
	srv, tftp := filepath.Join(work, "http"), filepath.Join(work, "tftp")
	start := time.Now()
	updPith(t, "live", "--image-dir", os.Getenv("PITH_E2E_IMAGE_DIR"), "--out", srv, "--formats", "pxe")
	st, err := os.Stat(filepath.Join(srv, live.PXEInitrdName))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCH pith live: PXE files (initrd %.1f MiB) in %s", float64(st.Size())/(1<<20), time.Since(start).Round(100*time.Millisecond))
	fx := prepareInstallFixtures(t, srv)
	// Only the chain script is on TFTP: a kernel or initrd fetched by TFTP
	// instead of HTTP fails the boot rather than slowing it.
	chain := "#!ipxe\nchain http://" + installGuestServer + "/" + live.PXEScriptName + "\n"
	if err := os.MkdirAll(tftp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte(chain), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	fetched := map[string]int{}
	files := http.FileServer(http.Dir(srv))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched[r.URL.Path]++
		mu.Unlock()
		files.ServeHTTP(w, r)
	})}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })

	n := Boot(t, Options{Netboot: &vm.Netboot{TFTPDir: tftp, Bootfile: "boot.ipxe"}, MemoryMiB: 2048,
		ExtraDisks: []string{newInstallDisk(t, work)},
		GuestFwd:   []string{guestFwd(t, installGuestServer, l.Addr().String())}}).Nodes[0]
	_, up := n.WaitConsole("live: ROOT is a tmpfs")
	t.Logf("BENCH PXE boot: init running from RAM at %s", up.Round(time.Second))
	n.WaitSSH()
	t.Logf("BENCH PXE boot: SSH at %s", n.Since().Round(time.Second))
	mu.Lock()
	for _, f := range []string{live.PXEScriptName, live.PXEKernelName, live.PXEInitrdName} {
		if fetched["/"+f] == 0 {
			t.Errorf("iPXE did not fetch %s over HTTP (fetched: %v)", f, fetched)
		}
	}
	mu.Unlock()
	cmdline := n.Run("cat /proc/cmdline")
	hash := regexp.MustCompile(` pith\.live pith\.usrhash=([0-9a-f]+) `).FindStringSubmatch(" " + cmdline + " ")
	if hash == nil {
		t.Fatalf("/proc/cmdline %q lacks pith.live pith.usrhash=", cmdline)
	}
	if got := n.Run("findmnt -no FSTYPE /"); got != "tmpfs" {
		t.Errorf("/ is %q, not a tmpfs", got)
	}
	// /usr: dm-verity, against the kernel line's root hash, over the loop
	// device of the USR image that came in the initrd.
	usrSrc := n.Run("findmnt -no SOURCE /usr")
	if !strings.HasSuffix(usrSrc, "/dm-0") && !strings.HasSuffix(usrSrc, "/mapper/usr") {
		t.Errorf("/usr is mounted from %s, not the dm-verity device", usrSrc)
	}
	if under := n.Run("ls /sys/class/block/" + filepath.Base(n.Run("readlink -f "+usrSrc)) + "/slaves"); !strings.HasPrefix(under, "loop") {
		t.Errorf("/usr's dm device is over %q, not a loop device", under)
	}
	table := n.Run("sudo dmsetup table usr")
	if f := strings.Fields(table); len(f) < 12 || f[2] != "verity" || f[11] != hash[1] {
		t.Errorf("dmsetup table usr = %q, want verity with root hash %s", table, hash[1])
	}
	t.Logf("PXE live system: %s; /usr %s: %s", cmdline, usrSrc, table)
	checkInstallRefusals(t, n, fx)
}

// installFromISO boots iso with firmware fw and installs.
func installFromISO(t *testing.T, iso, fw string) {
	NeedVMs(t, 1, 8*time.Minute)
	imgDir := os.Getenv("PITH_E2E_IMAGE_DIR")
	work := t.TempDir()

	// The image to install, compressed as an operator would serve it.
	srv := filepath.Join(work, "srv")
	os.MkdirAll(srv, 0o755)
	if out, err := exec.Command("zstd", "-q", "-1", "-T0", "-o", filepath.Join(srv, "pith.img.zst"), filepath.Join(imgDir, "pith.img")).CombinedOutput(); err != nil {
		t.Fatalf("zstd: %v: %s", err, out)
	}
	if out, err := exec.Command("cp", filepath.Join(imgDir, "pith.manifest.json"), srv).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.FileServer(http.Dir(srv))}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })

	empty := filepath.Join(work, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", empty, "6G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	live := filepath.Join(work, "live.yml")
	ud := "#cloud-config\npith:\n  install:\n    device: /dev/vda\n    image: http://" + installGuestServer + "/pith.img.zst\n    after: poweroff\n    user_data: |\n" +
		indent(installedUserData, "      ")
	if err := os.WriteFile(live, []byte(ud), 0o644); err != nil {
		t.Fatal(err)
	}

	c := Boot(t, Options{Image: empty, CDROM: iso, Firmware: fw, UserData: live, MemoryMiB: 2048,
		GuestFwd: []string{guestFwd(t, installGuestServer, l.Addr().String())}})
	n := c.Nodes[0]
	_, up := n.WaitConsole("live: ROOT is a tmpfs")
	t.Logf("BENCH live boot: init running from the ISO at %s", up.Round(time.Second))
	_, up = n.WaitConsole(LoginMarker)
	t.Logf("BENCH live boot: login prompt at %s", up.Round(time.Second))
	n.WaitConsole("pith install: Pith ")
	select {
	case <-n.M.Done():
	case <-time.After(BootTimeout(c.Accel)):
		t.Fatal("the live system did not power off after installing")
	}
	if m := regexp.MustCompile(`pith install: wrote [^\n]*`).FindString(n.ConsoleText()); m != "" {
		t.Logf("BENCH %s", strings.TrimSpace(m))
	}

	// The disk alone: no CD, the default (empty) user-data on fw_cfg.
	d := Boot(t, Options{Image: n.M.Disk, Firmware: fw, KeyFrom: c.VM, DiskSize: 6 << 30}).Nodes[0]
	d.WaitSSH()
	if got := d.Run("cat /etc/pith-installed"); got != "installed from pith.iso" {
		t.Errorf("/etc/pith-installed = %q: the OEM user-data was not applied", got)
	}
	if got := d.Run("sudo stat -c '%a %U' /usr/share/oem/cloud-config.yml && sudo cat /usr/share/oem/cloud-config.yml"); got != "600 root\n"+strings.TrimSpace(installedUserData) {
		t.Errorf("OEM cloud-config.yml: %q", got)
	}
	// pith install moved the GPT to the 6 GiB disk's end; first boot grew
	// ROOT (1.7 GiB in the 4 GiB image) to about 3.7 GiB.
	if size, err := strconv.ParseInt(strings.TrimSpace(d.Run("df -B1 --output=size / | tail -1")), 10, 64); err != nil || size < 3<<30 {
		t.Errorf("ROOT is %d bytes (%v): not grown onto the 6 GiB disk", size, err)
	}
}

func indent(s, pre string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pre + l
		}
	}
	return strings.Join(lines, "")
}
