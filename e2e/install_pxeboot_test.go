package e2e

// TestInstallFromISO's PXE boots, as README's PXE section serves the files
// of pith live --formats pxe: BIOS clients get the iPXE script, UEFI
// clients pith-pxe.efi (GRUB), both the kernel and the ~200 MB initrd
// over HTTP from a host server reached through a guestfwd (QEMU's TFTP
// takes minutes for the initrd: make pxe-boot).

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/image/live"
	"github.com/pith-os/pith/image/sbom"
	"github.com/pith-os/pith/vm"
)

// buildPXE makes the PXE files from the suite's image with pith live, into
// a directory both PXE subtests serve.
func buildPXE(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pxe")
	start := time.Now()
	args := []string{"live", "--image-dir", os.Getenv("PITH_E2E_IMAGE_DIR"), "--out", dir, "--formats", "pxe", "--cache", os.Getenv("PITH_E2E_CACHE_DIR")}
	updPith(t, append(args, updSecureBootArgs(t, builtImageManifest(t))...)...)
	st, err := os.Stat(filepath.Join(dir, live.PXEInitrdName))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCH pith live: PXE files (initrd %.1f MiB) in %s", float64(st.Size())/(1<<20), time.Since(start).Round(100*time.Millisecond))
	checkLiveSBOM(t, dir, sbom.BootPXEUEFI) // pith-pxe.efi's; BIOS clients boot through their own iPXE
	// pith-pxe.efi is the GRUB the SBOM names, the disk's UEFI GRUB: its
	// http module sends "User-Agent: GRUB <version>".
	img, err := sbom.Read(os.Getenv("PITH_E2E_IMAGE_DIR"))
	if err != nil {
		t.Fatal(err)
	}
	efi, err := os.ReadFile(filepath.Join(dir, live.PXEEFIName))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range img.BootLoaders {
		if b.Boot == sbom.BootUEFI && !bytes.Contains(efi, []byte("User-Agent: GRUB "+b.Version()+"\r\n")) {
			t.Errorf("%s is not GRUB %s, the image's UEFI GRUB", live.PXEEFIName, b.Version())
		}
	}
	return dir
}

// pxeServer serves dir over HTTP on 127.0.0.1 and counts the requests for
// each path.
type pxeServer struct {
	Addr    string
	mu      sync.Mutex
	fetched map[string]int
}

func servePXE(t *testing.T, dir string) *pxeServer {
	t.Helper()
	s := &pxeServer{fetched: map[string]int{}}
	files := http.FileServer(http.Dir(dir))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.fetched[r.URL.Path]++
		s.mu.Unlock()
		files.ServeHTTP(w, r)
	})}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return s
}

// checkFetched fails t unless every name was fetched over HTTP.
func (s *pxeServer) checkFetched(t *testing.T, who string, names ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range names {
		if s.fetched["/"+f] == 0 {
			t.Errorf("%s did not fetch %s over HTTP (fetched: %v)", who, f, s.fetched)
		}
	}
}

// pxeBoot boots the PXE files on a machine whose only disk holds a small
// GPT: QEMU's own DHCP/TFTP gives the iPXE ROM boot.ipxe, which chains
// pith-pxe.ipxe over HTTP; iPXE fetches the kernel and the initrd the
// script names relative to its URL from there too. The live system must
// answer SSH with the key from its fw_cfg meta-data and run from RAM,
// /usr verified (checkPXELive); then sudo pithctl install must refuse bad
// inputs without touching the disk (checkInstallRefusals; make
// bench-install also refuses a corrupt image and times an install
// against dd).
func pxeBoot(t *testing.T, srv string) {
	NeedVMs(t, 1, 2*time.Minute)
	work := t.TempDir()
	tftp := filepath.Join(work, "tftp")
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
	s := servePXE(t, srv)
	n := Boot(t, Options{Netboot: &vm.Netboot{TFTPDir: tftp, Bootfile: "boot.ipxe"}, MemoryMiB: 2048,
		ExtraDisks: []string{newInstallDisk(t, work)},
		GuestFwd:   []string{guestFwd(t, installGuestServer, s.Addr)}}).Nodes[0]
	_, up := n.WaitConsole("live: ROOT is a tmpfs")
	checkPXELive(t, n, "PXE boot", up)
	s.checkFetched(t, "iPXE", live.PXEScriptName, live.PXEKernelName, live.PXEInitrdName)
	checkInstallRefusals(t, n, fx)
}

// pxeBootUEFI boots pith-pxe.efi as a UEFI machine's PXE does, on a
// machine whose only disk is blank: QEMU's DHCP names it as the boot
// file, OVMF fetches it from QEMU's TFTP and runs it; GRUB reads
// pith-pxe.cfg beside it, which points it at the HTTP server for the
// kernel and the initrd. The live system must come up as pxeBoot's does.
// For a signed image (make image's) the machine has Secure Boot on with
// the image's keys: pith-pxe.efi is signed, and pith-pxe.cfg too (pith
// live sign), which the Secure Boot GRUB reads only so.
func pxeBootUEFI(t *testing.T, srv string) {
	NeedVMs(t, 1, 90*time.Second)
	work := t.TempDir()
	tftp := filepath.Join(work, "tftp")
	if err := os.MkdirAll(tftp, 0o755); err != nil {
		t.Fatal(err)
	}
	efi, err := os.ReadFile(filepath.Join(srv, live.PXEEFIName))
	if err != nil {
		t.Fatalf("%v: pith live --formats pxe makes it (a pith binary older than pith-pxe.efi? make bin)", err)
	}
	// Only GRUB and its override are on TFTP, as in pxeBoot.
	override := "set pith_pxe_base=(http," + installGuestServer + ")\n"
	for name, b := range map[string][]byte{live.PXEEFIName: efi, live.PXEEFIOverride: []byte(override)} {
		if err := os.WriteFile(filepath.Join(tftp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var sb *vm.SecureBootCerts
	if k := updSecureBootKeys(t, builtImageManifest(t)); k != "" {
		updPith(t, "live", "sign", "--secure-boot-keys", k, filepath.Join(tftp, live.PXEEFIOverride))
		if sb, err = vm.LoadSecureBootCerts(os.Getenv("PITH_E2E_IMAGE_DIR"), vm.SecureBootCertPrefix); err != nil {
			t.Fatal(err)
		}
	}
	blank := filepath.Join(work, "blank.raw")
	err = os.WriteFile(blank, nil, 0o644)
	if err == nil {
		err = os.Truncate(blank, installDiskSize)
	}
	if err != nil {
		t.Fatalf("blank disk: %v", err)
	}
	s := servePXE(t, srv)
	n := Boot(t, Options{Netboot: &vm.Netboot{TFTPDir: tftp, Bootfile: live.PXEEFIName}, Firmware: vm.UEFI, SecureBoot: sb, MemoryMiB: 2048,
		ExtraDisks: []string{blank},
		GuestFwd:   []string{guestFwd(t, installGuestServer, s.Addr)}}).Nodes[0]
	// GRUB's line only times the kernel and initrd's download; that GRUB
	// loaded them over HTTP is checked on the server.
	const grubLine, initLine = "live: loading (", "live: ROOT is a tmpfs"
	m, up := n.WaitConsole(grubLine, initLine)
	if m == grubLine {
		t.Logf("BENCH UEFI PXE boot: GRUB from TFTP loading the kernel at %s", up.Round(time.Second))
		_, up = n.WaitConsole(initLine)
	} else {
		t.Logf("no %q line from GRUB on the console", grubLine)
	}
	checkPXELive(t, n, "UEFI PXE boot", up)
	fetched := []string{live.PXEKernelName, live.PXEInitrdName}
	if sb != nil {
		// The Secure Boot GRUB checked both against their signatures.
		fetched = append(fetched, live.PXEKernelName+".sig", live.PXEInitrdName+".sig")
	}
	s.checkFetched(t, "GRUB", fetched...)
	if got := n.Run("test -d /sys/firmware/efi && echo uefi || echo bios"); got != vm.UEFI {
		t.Errorf("the PXE live system runs under %s firmware, want uefi", got)
	}
	if sb != nil {
		checkSecureBootOn(n, "the PXE live system")
	}
}

// checkPXELive checks n's live system, whose init started at up, over
// SSH: the kernel line of the PXE files, / a tmpfs, /usr dm-verity against
// the line's root hash over the loop device of the USR image from the
// initrd.
func checkPXELive(t *testing.T, n *Node, what string, up time.Duration) {
	t.Helper()
	t.Logf("BENCH %s: init running from RAM at %s", what, up.Round(time.Second))
	n.WaitSSH()
	t.Logf("BENCH %s: SSH at %s", what, n.Since().Round(time.Second))
	cmdline := n.Run("cat /proc/cmdline")
	hash := regexp.MustCompile(` pith\.live pith\.usrhash=([0-9a-f]+) `).FindStringSubmatch(" " + cmdline + " ")
	if hash == nil {
		t.Fatalf("/proc/cmdline %q lacks pith.live pith.usrhash=", cmdline)
	}
	if got := n.Run("findmnt -no FSTYPE /"); got != "tmpfs" {
		t.Errorf("/ is %q, not a tmpfs", got)
	}
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
	t.Logf("%s live system: %s; /usr %s: %s", what, cmdline, usrSrc, table)
}
