package e2e

// Issue 18: the live ISO installs Pith unattended, under BIOS and UEFI.
// pith.iso boots with an empty virtio disk; its user-data's pith.install
// section has the live system install the image (served from the host,
// zstd-compressed) with a second user-data; QEMU powers off; the disk then
// boots alone with the same firmware and applies the second user-data from
// its OEM partition: under BIOS an Ignition config (config.ign, as
// flatcar-install -i; the disk boots with no fw_cfg user-data, as on bare
// metal, and its SSH key comes from the config), under UEFI a
// #cloud-config (cloud-config.yml). The PXE files boot a machine with an empty disk to
// the live system's SSH: under BIOS through its NIC's iPXE ROM, where pith
// install refuses bad inputs and is timed against dd
// (install_pxe_test.go), and under UEFI through OVMF's PXE and
// pith-pxe.efi (install_pxeboot_test.go).

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/live"
	"github.com/pith-os/pith/image/sbom"
	"github.com/pith-os/pith/vm"
)

// installGuestServer is where the live system fetches the image.
const installGuestServer = "10.0.2.100:8080"

const installedUserData = `#cloud-config
write_files:
  - path: /etc/pith-installed
    content: "installed from pith.iso\n"
`

// installedIgnition is installedUserData as an Ignition config, with the
// test's SSH key for core (no fw_cfg meta-data reaches it).
func installedIgnition(sshKey string) string {
	return `{"ignition":{"version":"3.4.0"},` +
		`"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["` + strings.TrimSpace(sshKey) + `"]}]},` +
		`"storage":{"files":[{"path":"/etc/pith-installed","mode":420,"contents":{"source":"data:,installed%20from%20pith.iso%0A"}}]}}` + "\n"
}

// TestInstallFromISO installs from pith.iso under BIOS and under UEFI (with
// Secure Boot on when the image is signed, as make image's is: the ISO is
// signed with its keys) and boots the PXE files under both.
func TestInstallFromISO(t *testing.T) {
	// Parallel, so its subtests wait for a VM slot with the other VM tests
	// instead of running alone in go test's sequential phase.
	t.Parallel()
	bootImagePath(t) // skips (or fails in CI) without a built image
	iso := buildISO(t)
	pxe := buildPXE(t)
	t.Run(vm.BIOS, func(t *testing.T) { installFromISO(t, iso, vm.BIOS) })
	t.Run(vm.UEFI, func(t *testing.T) { installFromISO(t, iso, vm.UEFI) })
	t.Run("pxe-live", func(t *testing.T) { pxeBoot(t, pxe) })
	t.Run("pxe-live-uefi", func(t *testing.T) { pxeBootUEFI(t, pxe) })
}

// buildISO makes pith.iso from the suite's image with pith live.
func buildISO(t *testing.T) string {
	work := t.TempDir()
	start := time.Now()
	args := []string{"live", "--image-dir", os.Getenv("PITH_E2E_IMAGE_DIR"), "--out", work, "--formats", "iso", "--cache", os.Getenv("PITH_E2E_CACHE_DIR")}
	updPith(t, append(args, updSecureBootArgs(t, builtImageManifest(t))...)...)
	iso := filepath.Join(work, "pith.iso")
	st, err := os.Stat(iso)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCH pith live: pith.iso %.1f MiB in %s", float64(st.Size())/(1<<20), time.Since(start).Round(100*time.Millisecond))
	if st.Size() > 250<<20 {
		t.Errorf("pith.iso is %d MiB, over the 250 MiB target", st.Size()>>20)
	}
	checkLiveSBOM(t, work, sbom.BootBIOS, sbom.BootUEFI)
	return iso
}

// checkLiveSBOM reads the SBOM pith live wrote into dir: the image's
// packages, and the GRUB packages of the live boot paths boots.
func checkLiveSBOM(t *testing.T, dir string, boots ...string) {
	t.Helper()
	img, err := sbom.Read(os.Getenv("PITH_E2E_IMAGE_DIR"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := sbom.Read(filepath.Join(dir, live.SBOMName))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range inv.BootLoaders {
		got = append(got, b.Boot)
		if !slices.ContainsFunc(b.Packages, func(d sbom.Deb) bool { return d.Name == "grub-common" }) {
			t.Errorf("%s: the %s boot loader (%s) lacks grub-common: %+v", live.SBOMName, b.Boot, b.File, b.Packages)
		}
		// pith-pxe.efi and the ISO's BOOTX64.EFI are the disk's UEFI GRUB,
		// their packages the image's.
		if i := slices.IndexFunc(img.BootLoaders, func(d sbom.BootLoader) bool { return d.Boot == sbom.BootUEFI }); b.Boot != sbom.BootBIOS && i >= 0 && !reflect.DeepEqual(b.Packages, img.BootLoaders[i].Packages) {
			t.Errorf("%s: %s's GRUB %+v, want the image's UEFI GRUB %+v", live.SBOMName, b.File, b.Packages, img.BootLoaders[i].Packages)
		}
	}
	if inv.Name != "pith-live" || inv.Media != sbom.MediaLive || inv.Version != img.Version || len(inv.Packages) != len(img.Packages) || inv.Kernel != img.Kernel || !slices.Equal(got, boots) {
		t.Errorf("%s: %s %s (%q), %d packages, kernel %s, boot loaders %v; want pith-live %s (%q), the image's %d packages and kernel %s, boot loaders %v",
			live.SBOMName, inv.Name, inv.Version, inv.Media, len(inv.Packages), inv.Kernel.Version, got, img.Version, sbom.MediaLive, len(img.Packages), img.Kernel.Version, boots)
	}
}

// installFromISO boots iso with firmware fw and installs.
func installFromISO(t *testing.T, iso, fw string) {
	NeedVMs(t, 1, 5*time.Minute)
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
	// The key is made first: the Ignition config carries it.
	key := &vm.Cluster{Dir: filepath.Join(work, "key")}
	if _, key.PubKey, err = vm.EnsureKey(key.Dir); err != nil {
		t.Fatal(err)
	}
	installed, oemFile := installedUserData, "cloud-config.yml"
	if fw == vm.BIOS {
		installed, oemFile = installedIgnition(key.PubKey), "config.ign"
	}
	live := filepath.Join(work, "live.yml")
	ud := "#cloud-config\npith:\n  install:\n    device: /dev/vda\n    image: http://" + installGuestServer + "/pith.img.zst\n    after: poweroff\n    user_data: |\n" +
		indent(installed, "      ")
	if err := os.WriteFile(live, []byte(ud), 0o644); err != nil {
		t.Fatal(err)
	}

	// A signed image's ISO boots under UEFI with Secure Boot on, the
	// image's keys enrolled, and so does the disk it installs.
	var sb *vm.SecureBootCerts
	if fw == vm.UEFI && builtImageManifest(t).SecureBoot != nil {
		if sb, err = vm.LoadSecureBootCerts(imgDir, vm.SecureBootCertPrefix); err != nil {
			t.Fatal(err)
		}
	}
	c := Boot(t, Options{Image: empty, CDROM: iso, Firmware: fw, SecureBoot: sb, UserData: live, MemoryMiB: 2048, KeyFrom: key,
		GuestFwd: []string{guestFwd(t, installGuestServer, l.Addr().String())}})
	n := c.Nodes[0]
	_, up := n.WaitConsole("live: ROOT is a tmpfs")
	t.Logf("BENCH live boot (%s): init running from the ISO at %s", fw, up.Round(time.Second))
	_, up = n.WaitConsole(LoginMarker)
	t.Logf("BENCH live boot (%s): login prompt at %s", fw, up.Round(time.Second))
	n.WaitConsole("pith install: Pith ")
	select {
	case <-n.M.Done():
	case <-time.After(BootTimeout(c.Accel)):
		t.Fatal("the live system did not power off after installing")
	}
	if m := regexp.MustCompile(`pith install: wrote [^\n]*`).FindString(n.ConsoleText()); m != "" {
		t.Logf("BENCH (%s) %s", fw, strings.TrimSpace(m))
	}

	// The disk alone: no CD; the default (empty) user-data on fw_cfg, or
	// none for the Ignition config, which pith-init and pithd then read
	// from the OEM partition (fw_cfg's would win).
	d := Boot(t, Options{Image: n.M.Disk, Firmware: fw, SecureBoot: sb, KeyFrom: c.VM, DiskSize: 6 << 30, NoUserData: oemFile == "config.ign"}).Nodes[0]
	d.WaitSSH()
	if got := d.Run("test -d /sys/firmware/efi && echo uefi || echo bios"); got != fw {
		t.Errorf("the installed disk booted under %s, want %s", got, fw)
	}
	if sb != nil {
		checkSecureBootOn(d, "the installed disk")
	}
	if got := d.Run("cat /etc/pith-installed"); got != "installed from pith.iso" {
		t.Errorf("/etc/pith-installed = %q: the OEM user-data was not applied", got)
	}
	if got := d.Run("sudo stat -c '%a %U' /usr/share/oem/" + oemFile + " && sudo cat /usr/share/oem/" + oemFile); got != "600 root\n"+strings.TrimSpace(installed) {
		t.Errorf("OEM %s: %q", oemFile, got)
	}
	if oemFile == "config.ign" {
		// The node's user-data (applied once, as Ignition), not an OEM
		// cloud-config.
		if !strings.Contains(d.ConsoleText(), "Ignition: config from OEM config.ign") {
			t.Errorf("pith-init did not read the OEM partition's config.ign (console)")
		}
		if st := d.Run("sudo pithctl userdata"); !strings.Contains(st, "source:     oem-ignition\n") || !strings.Contains(st, "status:     applied\n") {
			t.Errorf("pithctl userdata: want source oem-ignition, applied:\n%s", st)
		}
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
