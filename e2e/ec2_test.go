package e2e

// TestEC2 boots the ec2 platform image under QEMU with an EC2 instance
// metadata service (IMDSv2) served by the test on 127.0.0.1 and reached by
// the guest at 169.254.169.254: QEMU accepts a guestfwd address only inside
// its user network, so the node's network is link-local (169.254.0.0/16)
// and each connection to 169.254.169.254:80 is relayed to the host server.
// Nothing leaves the machine: no AWS endpoint is ever contacted.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pith-os/pith/image/ami"
	"github.com/pith-os/pith/image/build"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// Metadata the fake instance has. The addresses are only strings served to
// the guest (documentation and VPC-like ranges); nothing connects to them.
const (
	ec2InstanceID = "i-0e2e5eedc0ffee123"
	ec2Hostname   = "ip-172-31-7-42.eu-central-1.compute.internal"
	ec2LocalIPv4  = "172.31.7.42"
	ec2PublicIPv4 = "203.0.113.25"
	ec2UserNet    = "169.254.0.0/16"
	ec2IMDSAddr   = "169.254.169.254:80"
)

// imdsRequest is one request the fake IMDS answered.
type imdsRequest struct {
	Method, Path string
	Token        bool // carried a valid session token
	At           time.Time
}

// fakeIMDS answers like EC2's IMDSv2-only service ("http-tokens required"):
// a session token from PUT /latest/api/token with a TTL header, and every
// GET must carry it, else 401.
type fakeIMDS struct {
	userData, sshKey string

	mu       sync.Mutex
	tokens   map[string]bool
	requests []imdsRequest
}

func (s *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	valid := s.tokens[r.Header.Get("X-aws-ec2-metadata-token")]
	s.requests = append(s.requests, imdsRequest{r.Method, r.URL.Path, valid, time.Now()})
	if r.URL.Path == "/latest/api/token" {
		ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		if r.Method != http.MethodPut || err != nil || ttl < 1 || ttl > 21600 {
			http.Error(w, "token request needs PUT and X-aws-ec2-metadata-token-ttl-seconds 1..21600", http.StatusBadRequest)
			return
		}
		b := make([]byte, 16)
		rand.Read(b)
		tok := hex.EncodeToString(b)
		s.tokens[tok] = true
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
		fmt.Fprint(w, tok)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !valid {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	files := map[string]string{
		"/latest/user-data":                           s.userData,
		"/latest/meta-data/instance-id":               ec2InstanceID,
		"/latest/meta-data/local-hostname":            ec2Hostname,
		"/latest/meta-data/hostname":                  ec2Hostname,
		"/latest/meta-data/local-ipv4":                ec2LocalIPv4,
		"/latest/meta-data/public-ipv4":               ec2PublicIPv4,
		"/latest/meta-data/public-keys/":              "0=pith-e2e",
		"/latest/meta-data/public-keys/0/openssh-key": s.sshKey + "\n",
	}
	body, ok := files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	fmt.Fprint(w, body)
}

func (s *fakeIMDS) log() []imdsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]imdsRequest(nil), s.requests...)
}

// ec2Image returns the ec2 platform's import disk (pith.img): the image dir's
// own if it was built for ec2, else one built now from the same inputs and
// cache with --platform ec2 and format ec2 (only the platform differs, so the
// cached Debian tree is reused).
func ec2Image(t *testing.T) string {
	t.Helper()
	return ec2ImageOf(t, builtImageDir(t))
}

// ec2ImageOf is ec2Image for the image in dir, of any architecture.
func ec2ImageOf(t *testing.T, dir string) string {
	t.Helper()
	m, err := manifest.Read(filepath.Join(dir, manifest.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if m.Platform == "ec2" {
		return filepath.Join(dir, "pith.img")
	}
	in := m.Inputs
	cfg := fmt.Sprintf("version: %q\narch: %s\nplatform: ec2\ndebian:\n  suite: %s\n  mirror: %s\n  packages: [%s]\n  kernel: %s\ndisk:\n  size: %d\nformats: [ec2]\nsource_date_epoch: %d\n",
		m.Version, m.Architecture(), in.Suite, in.Mirror, strings.Join(in.Packages, ", "), in.KernelPackage, in.DiskSize, in.SourceDateEpoch)
	tmp := t.TempDir()
	cfgPath := filepath.Join(tmp, "pith.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "ec2")
	args := []string{"build", "--config", cfgPath, "--out", out, "--agent-bin-dir", build.AgentDirFor(updBinDir(t), m.Architecture())}
	if c := os.Getenv("PITH_E2E_CACHE_DIR"); c != "" {
		args = append(args, "--cache", c)
	}
	start := time.Now()
	updPith(t, args...)
	t.Logf("MEASURE build of the ec2 image (warm cache): %s", time.Since(start).Round(time.Second))
	return filepath.Join(out, "pith.img")
}

func TestEC2(t *testing.T) {
	NeedVMs(t, 1, 150*time.Second) // the ec2 image's build, then one guest
	img := ec2Image(t)
	// The disk passes the check `pith ami upload` does before uploading.
	if _, err := ami.CheckImage(img, "uefi-preferred"); err != nil {
		t.Fatalf("the ec2 image fails pith ami upload's check: %v", err)
	}

	// The key the instance is launched with comes only from the metadata
	// service; the harness's own key (in QEMU's fw_cfg meta-data) must not
	// be installed, which shows the EC2 source won over fw_cfg.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	imdsKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " ec2-keypair-pith-e2e"

	const unitFile = "/run/pith-e2e/unit-ran"
	srv := &fakeIMDS{sshKey: imdsKey, tokens: map[string]bool{}, userData: `#cloud-config
write_files:
  - path: /etc/pith-e2e/addresses
    content: |
      private=$private_ipv4
      public=$public_ipv4
coreos:
  units:
    - name: pith-e2e-ec2.service
      command: start
      content: |
        [Service]
        Type=oneshot
        ExecStart=/bin/sh -c 'mkdir -p /run/pith-e2e && hostname > ` + unitFile + `'
`}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })

	fwd := guestFwd(t, ec2IMDSAddr, l.Addr().String())
	// UEFI: the AMI default (uefi-preferred) boots UEFI on current instance types.
	// An EBS volume larger than the image: ROOT must grow to fill it.
	const volume = 5 << 30
	c := Boot(t, Options{Image: img, Firmware: vm.UEFI, DiskSize: volume, GuestFwd: []string{fwd}, UserNet: ec2UserNet})
	n := c.Nodes[0]

	// Boot to metadata applied: pithd firstboot's last console line.
	_, applied := n.WaitConsole("applied; first boot: true")
	t.Logf("MEASURE boot to EC2 metadata applied (QEMU start to firstboot done, %s): %s", c.Accel.Name, applied.Round(time.Second))
	reqs := srv.log()
	if len(reqs) == 0 {
		t.Fatal("the node applied its config without asking the metadata service")
	}
	t.Logf("MEASURE QEMU start to first IMDS request: %s; %d requests", reqs[0].At.Sub(n.Started).Round(time.Second), len(reqs))
	// The initramfs asks first, for an Ignition config (this user-data is
	// a cloud-config, left to pithd), through whichever NIC gets a lease:
	// the machine also has the cluster port, which has no DHCP server.
	if con := n.ConsoleText(); !strings.Contains(con, ") is up for the EC2 metadata service: ") ||
		strings.Contains(con, "no network for the EC2 metadata service") || strings.Contains(con, "the EC2 metadata service did not answer") {
		t.Errorf("the initramfs did not reach the metadata service (console: %q)", regexp.MustCompile(`Ignition: [^\n]*`).FindAllString(con, -1))
	}

	// IMDSv2: a token first, every GET with it, the data the node needs.
	if reqs[0].Method != http.MethodPut || reqs[0].Path != "/latest/api/token" {
		t.Errorf("first IMDS request %s %s, want PUT /latest/api/token", reqs[0].Method, reqs[0].Path)
	}
	asked := map[string]bool{}
	for _, r := range reqs[1:] {
		if r.Method == http.MethodGet && !r.Token {
			t.Errorf("GET %s without a valid IMDSv2 token", r.Path)
		}
		asked[r.Path] = true
	}
	for _, p := range []string{"/latest/user-data", "/latest/meta-data/instance-id", "/latest/meta-data/local-hostname",
		"/latest/meta-data/local-ipv4", "/latest/meta-data/public-keys/0/openssh-key"} {
		if !asked[p] {
			t.Errorf("the node never read %s (asked %v)", p, asked)
		}
	}

	// SSH with the key from the metadata service.
	ctx, cancel := context.WithTimeout(context.Background(), BootTimeout(c.Accel))
	defer cancel()
	run := func(cmd string) string {
		t.Helper()
		r, err := vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, signer, cmd)
		if err != nil || r.ExitStatus != 0 {
			t.Fatalf("ssh %q: %v, exit %d\nstdout: %s\nstderr: %s", cmd, err, r.ExitStatus, r.Stdout, r.Stderr)
		}
		return strings.TrimSpace(string(r.Stdout))
	}
	var last error
	for ctx.Err() == nil {
		r, err := vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, signer, "true")
		if err == nil && r.ExitStatus == 0 {
			last = nil
			break
		}
		last = err
		// sshd is up and took the harness's fw_cfg key but not the
		// metadata's: waiting longer cannot help.
		if h, herr := vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, c.VM.Key, "cat ~/.ssh/authorized_keys"); herr == nil && h.ExitStatus == 0 {
			t.Fatalf("the node accepts the fw_cfg key but not the IMDS key (%v); authorized_keys:\n%s", err, h.Stdout)
		}
		select {
		case <-n.M.Done():
			t.Fatalf("QEMU exited while waiting for SSH: %v", n.M.Err())
		case <-time.After(2 * time.Second):
		}
	}
	if last != nil || ctx.Err() != nil {
		t.Fatalf("SSH as %s with the IMDS key never worked: %v", vm.DefaultUser, last)
	}
	t.Logf("MEASURE QEMU start to SSH with the IMDS key: %s", n.Since().Round(time.Second))

	keys := run("cat ~/.ssh/authorized_keys ~/.ssh/authorized_keys.d/* 2>/dev/null || true")
	if !strings.Contains(keys, "ec2-keypair-pith-e2e") {
		t.Errorf("IMDS key not in core's authorized keys:\n%s", keys)
	}
	if strings.Contains(keys, strings.TrimSpace(c.VM.PubKey)) {
		t.Errorf("the fw_cfg key was installed too: the node read QEMU's datasource, not (only) EC2's:\n%s", keys)
	}
	if h := run("hostname"); h != ec2Hostname && h != strings.Split(ec2Hostname, ".")[0] {
		t.Errorf("hostname %q, want the metadata's %s", h, ec2Hostname)
	}
	if got, want := run("cat /etc/pith-e2e/addresses"), "private="+ec2LocalIPv4+"\npublic="+ec2PublicIPv4; got != want {
		t.Errorf("/etc/pith-e2e/addresses = %q, want %q ($private_ipv4/$public_ipv4 from the metadata)", got, want)
	}
	if got := run("cat " + unitFile); got != run("hostname") {
		t.Errorf("user-data unit wrote %q", got)
	}
	if j := run("journalctl -b -o cat -t pithd-firstboot --no-pager"); !strings.Contains(j, "user-data from ec2") {
		t.Errorf("firstboot did not take the user-data from ec2:\n%s", j)
	}

	// The UEFI boot of an image: running, /usr through dm-verity, ROOT
	// grown to the volume on first boot (TestFirstBootOEM checks BIOS).
	checkBooted(t, n.M.Config.Firmware, filepath.Dir(img), volume, func(cmd string) (string, int) {
		r, err := vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, signer, cmd)
		if err != nil {
			t.Fatalf("ssh %q: %v", cmd, err)
		}
		return strings.TrimSpace(string(r.Stdout)), r.ExitStatus
	})

	// The platform's kernel settings and drivers are live.
	cmdline := run("cat /proc/cmdline")
	for _, want := range []string{"pith.platform=ec2", "console=ttyS0,115200n8", "nvme_core.io_timeout=4294967295"} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("kernel line lacks %s: %s", want, cmdline)
		}
	}
	if v := run("cat /sys/module/nvme_core/parameters/io_timeout"); v != "4294967295" {
		t.Errorf("nvme_core io_timeout %s", v)
	}
	// ENA and NVMe are loaded by the initramfs (no such devices under QEMU,
	// so nothing else would load them). xen-blkfront refuses to load
	// outside Xen: pith-init must have carried and tried it.
	for _, mod := range []string{"ena", "nvme"} {
		run("test -d /sys/module/" + mod)
	}
	if !regexp.MustCompile(`pith-init\[[^\]]*\]: not loaded \(not this hypervisor or hardware\):[^\n]*\bxen_blkfront\b`).MatchString(n.ConsoleText()) {
		t.Errorf("the initramfs did not try xen_blkfront (console has no pith-init line naming it)")
	}
}
