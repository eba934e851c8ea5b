package e2e

// Issue 18's refusals and benchmark, on the PXE live system of
// TestInstallFromISO/pxe-live with one virtio disk: sudo pithctl
// install refuses a partition table or a filesystem without --force, a
// mounted disk, and a manifest signed by a key the image does not trust
// or changed after signing, each with one line and the disk's fingerprint
// unchanged. With PITH_E2E_BENCH_INSTALL (make bench-install) it also
// refuses a corrupt image fetched over HTTP (found only once all 4 GiB are
// read: ~2 TCG minutes; image/install's TestInstall covers it on the host
// in the suite), then installs, timed against dd of the same image.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

const (
	// installDiskSize is the PXE machine's empty disk: larger than the
	// 4 GiB image, so the install also moves the backup GPT.
	installDiskSize = 6 << 30
	installMnt      = "/mnt/pith-e2e"
	// installLocal is where the live system unpacks the raw image (its
	// tmpfs root, sparse: ~200 MiB of RAM).
	installLocal = "/tmp/pith.img"
)

// installFixtures are the files the live system fetches, under /install/
// of the PXE HTTP server.
type installFixtures struct {
	image manifest.Artifact // the suite image's raw artifact
	url   string            // http://installGuestServer/install
}

// prepareInstallFixtures writes under srv/install:
//   - good/: the suite's manifest signed with the release key its USR trusts;
//   - foreign/: the manifest signed with a fresh pith keygen key;
//   - changed/: the good signature over the manifest with its image hash changed;
//
// and with benchInstall:
//   - corrupt/: the good manifest and signature, and pith.img.zst with one
//     byte of the image flipped (a valid zstd stream: only the SHA-256 is off);
//   - pith.img.tar: the raw image, sparse (GNU tar), the local image of the
//     good install and dd.
func prepareInstallFixtures(t *testing.T, srv string) installFixtures {
	t.Helper()
	imgDir := os.Getenv("PITH_E2E_IMAGE_DIR")
	body, err := os.ReadFile(filepath.Join(imgDir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Read(filepath.Join(imgDir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	fx := installFixtures{url: "http://" + installGuestServer + "/install"}
	for _, a := range m.Artifacts {
		if a.Format == "raw" {
			fx.image = a
		}
	}
	if fx.image.Name == "" || len(fx.image.SHA256) != 64 {
		t.Fatalf("%s lists no raw image with its SHA-256", manifest.FileName)
	}
	dir := filepath.Join(srv, "install")
	put := func(sub, name string, b []byte) string {
		p := filepath.Join(dir, sub, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const sig = ".sig" // install.SignatureSuffix
	good := put("good", manifest.FileName, body)
	updPith(t, "install", "sign", "--key", updReleaseKey(t), good)
	goodSig, err := os.ReadFile(good + sig)
	if err != nil {
		t.Fatal(err)
	}

	keys := filepath.Join(t.TempDir(), "keys")
	updPith(t, "keygen", "--out", keys)
	updPith(t, "install", "sign", "--key", filepath.Join(keys, "pith-release.key"), put("foreign", manifest.FileName, body))

	if strings.Count(string(body), fx.image.SHA256) != 1 {
		t.Fatalf("%s names the raw image's SHA-256 %d times, want once", manifest.FileName, strings.Count(string(body), fx.image.SHA256))
	}
	other := "0"
	if fx.image.SHA256[0] == '0' {
		other = "1"
	}
	put("changed", manifest.FileName, []byte(strings.Replace(string(body), fx.image.SHA256, other+fx.image.SHA256[1:], 1)))
	put("changed", manifest.FileName+sig, goodSig)
	if !benchInstall {
		return fx
	}

	put("corrupt", manifest.FileName, body)
	put("corrupt", manifest.FileName+sig, goodSig)
	flipped := filepath.Join(t.TempDir(), "pith.img")
	runHost(t, "cp", "--sparse=always", filepath.Join(imgDir, "pith.img"), flipped)
	flipByte(t, flipped, fx.image.Size/2)
	runHost(t, "zstd", "-q", "-1", "-T0", "-o", filepath.Join(dir, "corrupt", "pith.img.zst"), flipped)
	runHost(t, "tar", "--sparse", "-cf", filepath.Join(dir, "pith.img.tar"), "-C", imgDir, "pith.img")
	return fx
}

func runHost(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// flipByte inverts the byte at off of the file at p.
func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// newInstallDisk makes the PXE machine's raw disk (sparse), holding a GPT
// with one small partition, as a used disk would.
func newInstallDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "install-disk.raw")
	f, err := os.Create(p)
	if err == nil {
		err = f.Truncate(installDiskSize)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	runHost(t, "sgdisk", "-n", "1:1M:+1M", p)
	return p
}

// benchInstall (PITH_E2E_BENCH_INSTALL=1, make bench-install) adds the
// corrupt image and the good install timed against dd: ~6 more TCG
// minutes, outside the suite.
var benchInstall = os.Getenv("PITH_E2E_BENCH_INSTALL") != ""

// checkInstallRefusals runs the refusals on the live system n whose first
// extra disk holds newInstallDisk's GPT; with benchInstall, then the
// corrupt image, the good install and dd.
func checkInstallRefusals(t *testing.T, n *Node, fx installFixtures) {
	dev := n.Run("readlink -f /dev/disk/by-id/virtio-" + vm.ExtraDiskSerial(0))
	install := "sudo pithctl install --device " + dev + " --require-signature "
	// The disk and the manifest are checked before the image is opened,
	// so these cases name an image URL the server does not have: were it
	// fetched first, the refusal would be a 404, not the one wanted.
	unread := " --image " + fx.url + "/good/pith.img.zst"
	good := unread + " --manifest " + fx.url + "/good/" + manifest.FileName

	checkRefusal(t, n, dev, "a partition table without --force", install+good, "holds a GPT partition table")
	n.Run("sudo wipefs -q -a " + dev)
	// No lazy init: nothing writes to the mounted filesystem while its
	// fingerprint is compared. --force never overrides a mount.
	n.Run(fmt.Sprintf("sudo mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 %[1]s && sudo mkdir -p %[2]s && sudo mount %[1]s %[2]s", dev, installMnt))
	if fp := diskFingerprint(n, dev); !strings.Contains(fp, "TYPE=ext4") {
		t.Fatalf("%s holds no ext4 after mkfs.ext4: %s", dev, fp)
	}
	checkRefusal(t, n, dev, "a mounted disk", install+"--force"+good, "is mounted at "+installMnt)
	n.Run("sudo umount " + installMnt)
	checkRefusal(t, n, dev, "a filesystem without --force", install+good, "holds an ext2/3/4 filesystem")
	// The disk holds ext4: --force lets the install past it, so only the
	// signature can be the reason for these.
	for _, c := range []struct{ name, args, want string }{
		{"a manifest signed by another key", unread + " --manifest " + fx.url + "/foreign/" + manifest.FileName, "signed by no trusted key"},
		{"a manifest changed after signing", unread + " --manifest " + fx.url + "/changed/" + manifest.FileName, "bad signature by trusted key"},
	} {
		checkRefusal(t, n, dev, c.name, install+"--force"+c.args, c.want)
	}
	if !benchInstall {
		return
	}

	checkRefusal(t, n, dev, "a corrupt image", install+"--force --image "+fx.url+"/corrupt/pith.img.zst", "does not match its manifest")
	n.Run("curl -fsS " + fx.url + "/pith.img.tar | tar -xf - -C " + filepath.Dir(installLocal))
	if got := n.Run("stat -c %s " + installLocal); got != strconv.FormatInt(fx.image.Size, 10) {
		t.Fatalf("%s on the live system is %s bytes, want %d", installLocal, got, fx.image.Size)
	}
	good = " --image " + installLocal + " --manifest " + fx.url + "/good/" + manifest.FileName

	// The good install and dd: the same image file in RAM, the same disk,
	// both buffered 4 MiB writes ended by an fsync, the disk's page cache
	// dropped before each. pith install also checks the image's SHA-256
	// and writes only its data (holes by BLKZEROOUT); dd writes every byte.
	dropCaches := "sync && echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null"
	n.Run(dropCaches)
	r, installTook := timedRun(t, n, install+"--force"+good)
	out := string(r.Stdout)
	if r.ExitStatus != 0 || !strings.Contains(out, "signed by trusted key") || !strings.Contains(out, "is on "+dev) {
		t.Fatalf("pith install of the good image exited %d\nstdout: %s\nstderr: %s", r.ExitStatus, out, r.Stderr)
	}
	parts := strings.Fields(n.Run("for p in " + dev + "?*; do sudo blkid -p -s PART_ENTRY_NAME -o value $p || true; done"))
	for _, l := range []string{layout.LabelUSRA, layout.LabelRoot} {
		if !slices.Contains(parts, l) {
			t.Errorf("after pith install, %s's GPT names %v, not %s", dev, parts, l)
		}
	}
	n.Run(dropCaches)
	d, ddTook := timedRun(t, n, "sudo dd if="+installLocal+" of="+dev+" bs=4M conv=fsync")
	if d.ExitStatus != 0 {
		t.Fatalf("dd exited %d: %s", d.ExitStatus, d.Stderr)
	}
	mb := float64(fx.image.Size) / 1e6
	pi, dd := mb/installTook.Seconds(), mb/ddTook.Seconds()
	t.Logf("BENCH pith install %.0f MB/s vs dd %.0f MB/s (%.0f%%): %s image, pith install %.1fs (SHA-256 check and write; %s), dd bs=4M conv=fsync %.1fs (%s)",
		pi, dd, 100*pi/dd, layout.Human(fx.image.Size), installTook.Seconds(),
		regexp.MustCompile(`wrote [^\n]*`).FindString(out), ddTook.Seconds(), updDD(string(d.Stderr)))
}

// diskFingerprint is what a write to dev would change: blkid's view of it
// and the SHA-256 of its first MiB (where pith install writes first: the
// MBR and GPT) and of its last (the moved backup GPT), read through the
// page cache a mounted filesystem writes to.
func diskFingerprint(n *Node, dev string) string {
	n.t.Helper()
	return n.Run(fmt.Sprintf("sync; sudo blkid -p -o export %[1]s | grep -E '^(PT)?(TYPE|UUID)=' | sort; "+
		"for s in 0 %[2]d; do sudo dd if=%[1]s bs=1M skip=$s count=1 status=none | sha256sum; done", dev, installDiskSize>>20-1))
}

// checkRefusal runs cmd, which must fail with a single line on stderr
// (besides pith install's progress lines) that names want, and leave dev's
// fingerprint as it was.
func checkRefusal(t *testing.T, n *Node, dev, name, cmd, want string) {
	t.Helper()
	before := diskFingerprint(n, dev)
	r := n.Exec(cmd)
	var errs []string
	for _, l := range strings.Split(strings.TrimSpace(string(r.Stderr)), "\n") {
		if l != "" && !strings.HasPrefix(l, "pith install: ") {
			errs = append(errs, l)
		}
	}
	if r.ExitStatus == 0 || len(errs) != 1 || !strings.HasPrefix(errs[0], "pithctl: ") || !strings.Contains(errs[0], want) {
		t.Errorf("pith install with %s: exit %d, want a failure with one line naming %q\nstdout: %s\nstderr: %s", name, r.ExitStatus, want, r.Stdout, r.Stderr)
	} else {
		t.Logf("pith install refuses %s: %s", name, errs[0])
	}
	if after := diskFingerprint(n, dev); after != before {
		t.Errorf("pith install with %s changed %s:\nbefore: %s\nafter:  %s", name, dev, before, after)
	}
}

// timedRun runs cmd on n and returns its result and duration, both timed
// on the node (no SSH round trip in it).
func timedRun(t *testing.T, n *Node, cmd string) (vm.SSHResult, time.Duration) {
	t.Helper()
	const mark = "pith-e2e-elapsed-ns "
	r := n.Exec("s=$(date +%s%N); " + cmd + "; rc=$?; echo " + mark + "$(( $(date +%s%N) - s )) >&2; exit $rc")
	stderr := strings.TrimRight(string(r.Stderr), "\n")
	i := strings.LastIndex(stderr, mark)
	if i < 0 {
		t.Fatalf("%q: no elapsed time in its stderr: %s", cmd, r.Stderr)
	}
	ns, err := strconv.ParseInt(stderr[i+len(mark):], 10, 64)
	if err != nil {
		t.Fatalf("%q: elapsed time: %v", cmd, err)
	}
	r.Stderr = []byte(stderr[:i])
	return r, time.Duration(ns)
}
