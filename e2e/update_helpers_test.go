package e2e

// Helpers of the update VM test: a release repository served by `pith
// channel serve` on the host, reached from the guest through a QEMU
// guestfwd (the harness's user network is restrict=on, so 10.0.2.2 is not
// reachable; guestfwd rules still are), nodes booted with extra QEMU
// settings, and the node's update API read through the forwarded port.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/vm"
)

// updGuestServer is the address the guest uses for the channel server; the
// guestfwd rule hands each connection to it to a relay to the host's
// 127.0.0.1 listener.
const updGuestServer = "10.0.2.100:8080"

// guestFwd is the QEMU guestfwd rule that hands each guest connection to
// guest (an address on the user network) to `pith demo relay host`, one
// process per connection, which carries it to host (127.0.0.1:PORT).
func guestFwd(t *testing.T, guest, host string) string {
	t.Helper()
	pith := filepath.Join(updBinDir(t), "pith")
	if strings.ContainsAny(pith, " ,'\"") {
		t.Fatalf("%q cannot go into a QEMU guestfwd command", pith)
	}
	return fmt.Sprintf("tcp:%s-cmd:%s demo relay %s", guest, pith, host)
}

// updBinDir is PITH_E2E_BIN_DIR (pith, pithd, pithctl from make bin).
func updBinDir(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("PITH_E2E_BIN_DIR")
	if bin == "" {
		t.Fatal("PITH_E2E_BIN_DIR is not set: run make e2e")
	}
	return bin
}

// updReleaseKey is the private half of the development release key whose
// public half make image bakes into the image: PITH_E2E_RELEASE_KEY, else
// release-key/pith-release.key in PITH_E2E_CACHE_DIR (make's $(CACHE)).
func updReleaseKey(t *testing.T) string {
	t.Helper()
	k := os.Getenv("PITH_E2E_RELEASE_KEY")
	if k == "" {
		if c := os.Getenv("PITH_E2E_CACHE_DIR"); c != "" {
			k = filepath.Join(c, "release-key", "pith-release.key")
		}
	}
	if k == "" {
		t.Fatal("no development release key: set PITH_E2E_RELEASE_KEY or PITH_E2E_CACHE_DIR (make e2e sets both)")
	}
	if _, err := os.Stat(k); err != nil {
		t.Fatalf("development release key: %v: build the image with make image, which makes the key and bakes its public half in", err)
	}
	return k
}

// updSecureBootKeys is the directory of the Secure Boot keys the image
// whose manifest is m is signed with, "" for an unsigned image: make image
// signs with the development keys it makes once per cache
// (PITH_E2E_SECURE_BOOT_KEYS, else secure-boot-keys in PITH_E2E_CACHE_DIR),
// and its nodes refuse a release signed otherwise.
func updSecureBootKeys(t *testing.T, m *manifest.Manifest) string {
	t.Helper()
	if m.SecureBoot == nil {
		return ""
	}
	k := os.Getenv("PITH_E2E_SECURE_BOOT_KEYS")
	if k == "" {
		if c := os.Getenv("PITH_E2E_CACHE_DIR"); c != "" {
			k = filepath.Join(c, "secure-boot-keys")
		}
	}
	if k == "" {
		t.Fatal("the image is signed for Secure Boot and no development keys are set: set PITH_E2E_SECURE_BOOT_KEYS or PITH_E2E_CACHE_DIR (make e2e sets both)")
	}
	if _, err := os.Stat(k); err != nil {
		t.Fatalf("development Secure Boot keys: %v: build the image with make image, which makes them and signs with them", err)
	}
	return k
}

// updSecureBootArgs are the pith build arguments that sign a release of
// the image whose manifest is m as that image is signed (updSecureBootKeys).
func updSecureBootArgs(t *testing.T, m *manifest.Manifest) []string {
	t.Helper()
	if k := updSecureBootKeys(t, m); k != "" {
		return []string{"--secure-boot-keys", k}
	}
	return nil
}

// updPith runs the pith CLI and returns its combined output.
func updPith(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(updBinDir(t), "pith"), args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=") // the config's epoch applies
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pith %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return string(b)
}

// updServe starts `pith channel serve` on a free 127.0.0.1 port and
// returns that address; the server stops with the test. The server binds
// port 0 itself and the address is read from its log: a port picked here
// and bound there could be taken in between by a test running beside.
func updServe(t *testing.T, repo string) string {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(updBinDir(t), "pith"), "channel", "serve", "--repo", repo, "--listen", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("pith channel serve log:\n%s", b)
		}
	})
	serving := regexp.MustCompile(`serving .* at http://(127\.0\.0\.1:\d+)/`)
	for i := 0; ; i++ {
		b, _ := os.ReadFile(logf.Name())
		if m := serving.FindSubmatch(b); m != nil {
			addr := string(m[1])
			if resp, err := http.Get("http://" + addr + "/channels/stable.json"); err == nil {
				resp.Body.Close()
				return addr
			}
		}
		select {
		case <-exited:
			t.Fatalf("pith channel serve exited: %s", b)
		case <-time.After(100 * time.Millisecond):
		}
		if i == 600 {
			t.Fatalf("pith channel serve never said where it serves:\n%s", b)
		}
	}
}

// updBoot starts one node with the channel server's guestfwd, on image img
// (a base image, or the disk of an earlier QEMU of this test to continue
// that machine with key's SSH key pair).
func updBoot(t *testing.T, img, userData, guestFwd string, key *vm.Cluster) *Cluster {
	t.Helper()
	return Boot(t, Options{Image: img, UserData: userData, GuestFwd: []string{guestFwd}, KeyFrom: key})
}

// updStatus reads the node's update agent through the forwarded API port;
// ok is false when pithd does not answer (rebooting, not started yet).
func (n *Node) updStatus() (st node.UpdateStatus, ok bool) {
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/pith/v1/update", n.M.Ports[2379]))
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, false
	}
	return st, json.NewDecoder(resp.Body).Decode(&st) == nil
}

// updWaitStatus polls the update API until cond holds and returns that
// status; it fails if QEMU exits or the safety timeout passes.
func (n *Node) updWaitStatus(what string, cond func(node.UpdateStatus) bool) node.UpdateStatus {
	n.t.Helper()
	deadline := time.Now().Add(BootTimeout(n.c.Accel))
	var last node.UpdateStatus
	for time.Now().Before(deadline) {
		if st, ok := n.updStatus(); ok {
			last = st
			if cond(st) {
				return st
			}
		}
		select {
		case <-n.M.Done():
			n.t.Fatalf("%s: QEMU exited while waiting for %s: %v (last status %+v)", n.Name, what, n.M.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
	n.t.Fatalf("%s: never reached %s; last update status %+v", n.Name, what, last)
	return last
}

// updHasEvent reports whether the history has an event of that kind and version.
func updHasEvent(st node.UpdateStatus, kind, version string) bool {
	return updCountEvents(st, kind, version) > 0
}

func updCountEvents(st node.UpdateStatus, kind, version string) int {
	n := 0
	for _, e := range st.History {
		if e.Kind == kind && e.Version == version {
			n++
		}
	}
	return n
}

// updOSVersion is os-release's VERSION on the node.
func (n *Node) updOSVersion() string {
	return n.Run(". /usr/lib/os-release && echo \"$VERSION\"")
}

// updNextPatch returns MAJOR.MINOR.(PATCH+1) of a MAJOR.MINOR.PATCH version.
func updNextPatch(t *testing.T, v string) string {
	p := strings.Split(v, ".")
	if len(p) != 3 {
		t.Fatalf("image version %q is not MAJOR.MINOR.PATCH: build the image with such a version", v)
	}
	n, err := strconv.Atoi(p[2])
	if err != nil {
		t.Fatalf("image version %q: %v", v, err)
	}
	return fmt.Sprintf("%s.%s.%d", p[0], p[1], n+1)
}

// updDD parses dd's summary line ("... copied, 3.2 s, 168 MB/s").
func updDD(out string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	last := ""
	for sc.Scan() {
		if strings.Contains(sc.Text(), "copied") {
			last = strings.TrimSpace(sc.Text())
		}
	}
	return last
}

// updBuild builds release version of the image whose manifest is m, from
// the same inputs (and PITH_E2E_CACHE_DIR's cache), signed for Secure Boot
// as make image signs it: only the version differs. Its USR trusts the
// release keys pubs. It returns the output directory under tmp.
func updBuild(t *testing.T, m *manifest.Manifest, version, tmp string, pubs ...string) string {
	t.Helper()
	return updBuildWith(t, m, version, tmp, updSecureBootArgs(t, m), pubs...)
}

// updBuildWith is updBuild with more pith build arguments (e.g.
// --secure-boot-keys DIR).
func updBuildWith(t *testing.T, m *manifest.Manifest, version, tmp string, extra []string, pubs ...string) string {
	t.Helper()
	in := m.Inputs
	cfg := fmt.Sprintf("version: %q\nplatform: %s\ndebian:\n  suite: %s\n  mirror: %s\n  packages: [%s]\n  kernel: %s\ndisk:\n  size: %d\nformats: [raw]\nsource_date_epoch: %d\n",
		version, m.Platform, in.Suite, in.Mirror, strings.Join(in.Packages, ", "), in.KernelPackage, in.DiskSize, in.SourceDateEpoch)
	cfgPath := filepath.Join(tmp, "pith-"+version+".yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, version)
	args := []string{"build", "--config", cfgPath, "--out", out, "--agent-bin-dir", updBinDir(t)}
	for _, p := range pubs {
		args = append(args, "--release-key", p)
	}
	args = append(args, extra...)
	if c := os.Getenv("PITH_E2E_CACHE_DIR"); c != "" {
		args = append(args, "--cache", c)
	}
	updPith(t, args...)
	return out
}

// updUserData is the cloud-config of a node that follows the stable
// channel served at updGuestServer with etcd-lock on its own KV.
var updUserData = fmt.Sprintf(`#cloud-config
coreos:
  etcd2:
    listen-client-urls: http://0.0.0.0:2379
  update:
    group: stable
    server: http://%s/
    reboot-strategy: etcd-lock
pith:
  update:
    verify_timeout: %s
`, updGuestServer, updVerifyTimeout)
