package e2e

// The Vagrant walkthrough a user follows, for real: build the vagrant
// platform image, `pith box`, `vagrant box add`, `vagrant up` with the
// repository's Vagrantfile (libvirt provider, TCG when KVM cannot run
// guests), then `vagrant ssh core-01 -c` checks. libvirtd, its dnsmasq and
// bridges, and the machine live in a network namespace this test creates,
// with no route out; everything is torn down whatever happens.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository (this file's parent directory's parent).
func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Dir(filepath.Dir(file))
}

// vagrantEnv runs commands inside the test's network namespace with the
// test's VAGRANT_HOME.
type vagrantEnv struct {
	t       *testing.T
	netns   string
	nsState string
	script  string // vagrant/netns.sh
	project string
	env     []string
}

func (v *vagrantEnv) run(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, v.script, append([]string{"exec", v.netns, "env"}, append(v.env, args...)...)...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (v *vagrantEnv) must(ctx context.Context, dir string, args ...string) string {
	v.t.Helper()
	out, err := v.run(ctx, dir, args...)
	if err != nil {
		v.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, tail(out, 60))
	}
	return out
}

// tail keeps the last n lines (vagrant's progress bars are long).
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestVagrantUp(t *testing.T) {
	// The vagrant image's build, then one libvirt guest.
	NeedVMs(t, 1, 4*time.Minute)
	bootImagePath(t) // the image dir decides whether VM tests run at all (skip/fatal as the others)
	binDir := os.Getenv("PITH_E2E_BIN_DIR")
	if binDir == "" {
		t.Fatal("PITH_E2E_BIN_DIR is not set: run the VM tests through `make e2e` (it builds pith, pithd and pithctl into _out/bin)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the Vagrant test runs libvirtd and a network namespace: it needs root")
	}
	root := repoRoot(t)
	ctx := context.Background()

	// Vagrant, vagrant-libvirt, libvirtd, dnsmasq from Debian (no-op when present).
	if out, err := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack/install-vagrant-deps.sh")).CombinedOutput(); err != nil {
		t.Fatalf("installing Vagrant's packages: %v\n%s", err, out)
	}

	work := t.TempDir()
	cache := os.Getenv("PITH_E2E_CACHE_DIR")
	if cache == "" {
		cache = filepath.Join(work, "cache")
	}
	pith := filepath.Join(binDir, "pith")

	// The vagrant platform image: its first-boot stage reads the user-data
	// the Vagrantfile uploads before any other source.
	imgDir := filepath.Join(work, "image")
	cfg := filepath.Join(work, "pith.yaml")
	if err := os.WriteFile(cfg, []byte("platform: vagrant\nformats: [qcow2]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := exec.CommandContext(ctx, pith, "build", "--config", cfg, "--out", imgDir, "--cache", cache, "--agent-bin-dir", binDir).CombinedOutput(); err != nil {
		t.Fatalf("pith build --platform vagrant: %v\n%s", err, tail(string(out), 40))
	}
	t.Logf("vagrant platform image built in %s", time.Since(start).Round(time.Second))
	boxFile := filepath.Join(work, "pith.box")
	out, err := exec.CommandContext(ctx, pith, "box", "--image", filepath.Join(imgDir, "pith.qcow2"), "--out", boxFile).CombinedOutput()
	if err != nil {
		t.Fatalf("pith box: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))

	v := &vagrantEnv{
		t:       t,
		netns:   fmt.Sprintf("pith-vagrant-%d", os.Getpid()),
		nsState: filepath.Join(work, "libvirt"),
		script:  filepath.Join(root, "vagrant/netns.sh"),
		project: filepath.Join(work, "project"),
	}
	consoles := filepath.Join(work, "console")
	v.env = []string{
		"VAGRANT_HOME=" + filepath.Join(work, "vagrant.d"),
		"VAGRANT_CHECKPOINT_DISABLE=1",
		"VAGRANT_NO_COLOR=1",
		"PITH_LIBVIRT_DRIVER=qemu", // /dev/kvm here is nested and cannot run guests
		"PITH_VAGRANT_CONSOLE_DIR=" + consoles,
		"LIBVIRT_DEFAULT_URI=qemu:///system",
		"PATH=" + binDir + ":" + os.Getenv("PATH"),
	}
	for _, d := range []string{v.project, consoles, filepath.Join(v.project, "share")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// Teardown runs whatever happened: machines, the box's volume, daemons, netns.
	t.Cleanup(func() {
		ctx := context.Background()
		if t.Failed() {
			if logs, _ := filepath.Glob(filepath.Join(consoles, "*.log")); len(logs) > 0 {
				for _, l := range logs {
					b, _ := os.ReadFile(l)
					t.Logf("serial console %s (end):\n%s", filepath.Base(l), tail(string(b), 80))
				}
			}
		}
		if out, err := v.run(ctx, v.project, "vagrant", "destroy", "-f"); err != nil {
			t.Errorf("vagrant destroy -f: %v\n%s", err, tail(out, 30))
		}
		if out, err := v.run(ctx, v.project, "sh", "-c", "for vol in $(virsh vol-list default 2>/dev/null | awk '/_vagrant_box_image_/ {print $1}'); do virsh vol-delete --pool default \"$vol\"; done"); err != nil {
			t.Logf("removing the box's libvirt volume: %v\n%s", err, out)
		}
		if out, err := exec.CommandContext(ctx, v.script, "stop", v.netns, v.nsState).CombinedOutput(); err != nil {
			t.Errorf("stopping libvirtd and deleting netns %s: %v\n%s", v.netns, err, out)
		}
		if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte(v.netns)) {
			t.Errorf("netns %s is still there", v.netns)
		}
	})
	if out, err := exec.CommandContext(ctx, v.script, "start", v.netns, v.nsState).CombinedOutput(); err != nil {
		t.Fatalf("libvirtd in netns %s: %v\n%s", v.netns, err, out)
	}
	// The namespace has no way out: only loopback and what libvirt makes.
	if out := v.must(ctx, work, "ip", "route", "show", "default"); strings.TrimSpace(out) != "" {
		t.Fatalf("netns %s has a default route: %s", v.netns, out)
	}

	// The project: the repository's Vagrantfile, one node, a user-data that
	// leaves marks to check, and a folder synced with rsync.
	vf, err := os.ReadFile(filepath.Join(root, "vagrant/Vagrantfile"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"Vagrantfile": string(vf),
		"config.rb": `$num_instances = 1
$vm_memory = 1024
$shared_folders = { "share" => "/home/vagrant/share" }
`,
		"user-data": `#cloud-config
write_files:
  - path: /etc/pith-vagrant-check
    content: |
      applied from the vagrant datasource at $private_ipv4
coreos:
  units:
    - name: vagrant-check.service
      command: start
      content: |
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/bin/sh -c 'echo unit-ran > /run/vagrant-check'
pith:
  cluster:
    name: vagrant-e2e
    advertise-ip: $private_ipv4
    discovery: <discovery-url>
  update:
    channel: <update-channel>
    reboot-strategy: "off"
`,
		"share/hello.txt": "synced by rsync\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(v.project, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.CommandContext(ctx, pith, "validate", filepath.Join(root, "vagrant/user-data.sample")).CombinedOutput(); err == nil {
		t.Logf("user-data.sample validates as is:\n%s", out)
	}

	catalog := strings.TrimSuffix(boxFile, ".box") + ".json"
	v.must(ctx, v.project, "vagrant", "box", "add", catalog)

	start = time.Now()
	upOut, err := v.run(ctx, v.project, "vagrant", "up")
	upTime := time.Since(start)
	if err != nil {
		t.Fatalf("vagrant up (%s): %v\n%s", upTime.Round(time.Second), err, tail(upOut, 80))
	}
	t.Logf("vagrant up of one node took %s (TCG)", upTime.Round(time.Second))

	ssh := func(cmd string) string {
		t.Helper()
		return strings.TrimSpace(v.must(ctx, v.project, "vagrant", "ssh", "core-01", "-c", cmd))
	}
	for _, c := range []struct{ what, cmd, want string }{
		{"login user", "id -un", "vagrant"},
		{"passwordless sudo", "sudo -n id -u", "0"},
		{"hostname", "hostname", "core-01"},
		{"private network", "ip -4 -o addr show | grep -o '172\\.17\\.8\\.101/24'", "172.17.8.101/24"},
		{"datasource", "sudo cat /var/lib/pith/user-data.json | tr -d ' \\n' | grep -o '\"source\":\"[a-z-]*\"'", `"source":"vagrant"`},
		{"user-data applied", "cat /etc/pith-vagrant-check", "applied from the vagrant datasource at 172.17.8.101"},
		{"unit started", "cat /run/vagrant-check", "unit-ran"},
		{"rsync synced folder", "cat /home/vagrant/share/hello.txt", "synced by rsync"},
		{"pithd", "systemctl is-active pithd.service", "active"},
		{"KV health", "curl -fsS http://127.0.0.1:2379/health", `"health":"true"`},
	} {
		got := ssh(c.cmd)
		if !strings.Contains(got, c.want) {
			t.Errorf("%s: %q gave %q, want %q", c.what, c.cmd, got, c.want)
		}
	}
	// The vagrant user came from the box's OEM partition, not from QEMU.
	if got := ssh("sudo cat /var/lib/pith/oem.json | tr -d ' \\n'"); !strings.Contains(got, `"source":"oem"`) || !strings.Contains(got, `"applied":true`) {
		t.Errorf("oem.json: %s", got)
	}
	if got := ssh("test -e /sys/firmware/qemu_fw_cfg/by_name/opt/org.pith && echo fw_cfg || echo none"); got != "none" {
		t.Errorf("the box passed user-data through fw_cfg: %s", got)
	}
	// pithd waited for the Vagrant user-data: at boot its start was
	// skipped on the wait condition, and its KV was made only afterwards.
	if got := ssh("sudo journalctl -b --no-pager -o cat -t pithd-firstboot | grep -c 'waiting for the vagrant datasource' || true"); got == "0" {
		t.Errorf("first boot did not wait for the Vagrant user-data")
	}
	if got := ssh("sudo journalctl -b --no-pager -o cat -u pithd.service | head -n 3"); !strings.Contains(got, "ConditionPathExists=/var/lib/pith/first-boot.done") {
		t.Errorf("pithd.service was not held back at boot; its journal starts:\n%s", got)
	}
	// Provisioning again with the same user-data changes nothing.
	prov := v.must(ctx, v.project, "vagrant", "provision")
	if !strings.Contains(prov, "changed: nothing") {
		t.Errorf("vagrant provision with the same user-data:\n%s", tail(prov, 30))
	}
	// pithd answers as the cluster the user-data named: core-01 is its only member.
	if got := ssh("pithctl member list"); !strings.Contains(got, "core-01") || !strings.Contains(got, "172.17.8.101") {
		t.Errorf("pithctl member list: %q, want core-01 at 172.17.8.101", got)
	}
}
