package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pith-os/pith/vagrant/box"
	"github.com/pith-os/pith/vm"
)

// The container the first-boot configs start: hello.path (started by the
// config) waits for the offline image, which the test copies in over SSH;
// hello.service imports it (no registry) and runs it with docker.
const helloPathUnit = `[Unit]
Description=Start hello.service once its image is there

[Path]
PathExists=` + helloImagePath + `
Unit=hello.service
`

const helloUnitBody = `[Unit]
Description=Static HTTP server in a container from an offline image
Requires=docker.socket
After=docker.socket

[Service]
# dockerd starts on first use through its socket; under TCG that is slow.
TimeoutStartSec=15min
ExecStartPre=-/usr/bin/docker rm -f hello
ExecStartPre=/bin/sh -c '/usr/bin/docker image inspect ` + helloImageName + ` >/dev/null 2>&1 || /usr/bin/docker import ` + helloImagePath + ` ` + helloImageName + `'
ExecStart=/usr/bin/docker run --rm --name hello --network host ` + helloImageName + ` /hello -addr :8080 -msg "hello from %H"
ExecStop=/usr/bin/docker stop hello
Restart=on-failure
RestartSec=5s
`

// dockerDaemon keeps dockerd from setting up iptables and its bridge: the
// containers use the host's network, and under TCG those iptables calls
// take minutes.
const dockerDaemon = `{"iptables": false, "bridge": "none"}` + "\n"

// dockerDaemonJSON is dockerDaemon as a cloud-config write_files entry.
const dockerDaemonJSON = `  - path: /etc/docker/daemon.json
    content: |
      ` + dockerDaemon

const fileContent = "written at first boot\nsecond line\n"

func cloudConfigUserData(t *testing.T, pub string) string {
	indent := func(s, in string) string {
		return in + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+in) + "\n"
	}
	return `#cloud-config
hostname: e2e-cc
users:
  - name: alice
    gecos: E2E Alice
    groups: [docker]
    ssh-authorized-keys:
      - ` + pub + `
write_files:
  - path: /etc/pith-e2e/motd
    permissions: '0640'
    owner: alice:alice
    content: |
` + indent(fileContent, "      ") + dockerDaemonJSON + `coreos:
  units:
    - name: hello.service
      content: |
` + indent(helloUnitBody, "        ") + `    - name: hello.path
      command: start
      content: |
` + indent(helloPathUnit, "        ")
}

func ignitionUserData(t *testing.T, pub string) string {
	t.Helper()
	type hash struct {
		Hash string `json:"hash"`
	}
	type contents struct {
		Source       string `json:"source"`
		Compression  string `json:"compression,omitempty"`
		Verification *hash  `json:"verification,omitempty"`
	}
	type named struct {
		Name string `json:"name"`
	}
	type file struct {
		Path      string   `json:"path"`
		Mode      int      `json:"mode"`
		User      *named   `json:"user,omitempty"`
		Group     *named   `json:"group,omitempty"`
		Contents  contents `json:"contents"`
		Overwrite bool     `json:"overwrite,omitempty"`
	}
	data := func(s string) string { return "data:;base64," + base64.StdEncoding.EncodeToString([]byte(s)) }
	cfg := map[string]any{
		"ignition": map[string]string{"version": "3.4.0"},
		"passwd": map[string]any{"users": []map[string]any{{
			"name": "bob", "gecos": "E2E Bob", "groups": []string{"docker"}, "sshAuthorizedKeys": []string{pub},
		}}},
		// The second disk (by its serial: vda/vdb follow the probe order)
		// gets a GPT with three partitions, ext4 at e2eDataPath, xfs
		// (mkfs.xfs wants at least 300 MiB) and vfat, made and mounted
		// from the initramfs; files under e2eDataPath and the xfs path
		// are written by the first-boot stage after the mounts.
		"storage": map[string]any{
			"disks": []map[string]any{{"device": "/dev/disk/by-id/virtio-" + vm.ExtraDiskSerial(0), "wipeTable": true,
				"partitions": []map[string]any{
					{"label": "e2edata", "number": 1, "sizeMiB": 256},
					{"label": "e2exfs", "number": 2, "sizeMiB": 320},
					{"label": "e2evfat", "number": 3, "sizeMiB": 64},
				}}},
			// The third and fourth disks: RAID1, LUKS2 on the array bound
			// to the TPM (its generated key removed), ext4 for docker on
			// that: checkIgnitionRaidLuks.
			"raid": []map[string]any{{"name": e2eRaid, "level": "raid1", "devices": []string{
				"/dev/disk/by-id/virtio-" + vm.ExtraDiskSerial(1), "/dev/disk/by-id/virtio-" + vm.ExtraDiskSerial(2)}}},
			// And ROOT encrypted, bound to the TPM, as Fedora CoreOS's
			// boot_device.luks writes it: checkRootLuks.
			"luks": []map[string]any{
				{"name": e2eLuks, "device": "/dev/md/" + e2eRaid, "clevis": map[string]any{"tpm2": true}},
				{"name": e2eRootLuks, "label": "luks-root", "device": "/dev/disk/by-partlabel/ROOT", "clevis": map[string]any{"tpm2": true}, "wipeVolume": true},
			},
			"filesystems": []map[string]any{
				{"device": "/dev/mapper/" + e2eRootLuks, "format": "ext4", "label": "ROOT", "wipeFilesystem": true},
				{"device": "/dev/mapper/" + e2eLuks, "format": "ext4", "label": "e2edocker", "path": "/var/lib/docker"},
				{"device": "/dev/disk/by-partlabel/e2edata", "format": "ext4",
					"label": "e2edata", "path": e2eDataPath, "mountOptions": []string{"noatime"}},
				{"device": "/dev/disk/by-partlabel/" + e2eXFS.partLabel, "format": "xfs", "label": e2eXFS.label, "path": e2eXFS.path},
				{"device": "/dev/disk/by-partlabel/" + e2eVFAT.partLabel, "format": "vfat", "label": e2eVFAT.label, "path": e2eVFAT.path},
			},
			"files": []file{
				{Path: "/etc/hostname", Mode: 0o644, Contents: contents{Source: data("e2e-ign\n")}, Overwrite: true},
				{Path: "/etc/pith-e2e/motd", Mode: 0o640, User: &named{"bob"}, Group: &named{"bob"}, Contents: contents{Source: data(fileContent),
					Verification: &hash{fmt.Sprintf("sha512-%x", sha512.Sum512([]byte(fileContent)))}}},
				{Path: "/etc/docker/daemon.json", Mode: 0o644, Contents: contents{Source: data(dockerDaemon)}},
				{Path: e2eDataPath + "/hello", Mode: 0o644, Contents: contents{Source: data(fileContent)}},
				{Path: e2eXFS.path + "/hello", Mode: 0o644, Contents: contents{Source: data(fileContent)}},
			}},
		"systemd": map[string]any{"units": []map[string]any{
			{"name": "hello.service", "contents": helloUnitBody},
			{"name": "hello.path", "enabled": true, "contents": helloPathUnit + "\n[Install]\nWantedBy=paths.target\n"},
		}},
		// Applied by pith-init on first boot (the ESP's grub/kargs, one
		// reboot) before the storage stage: checkIgnitionKargs.
		"kernelArguments": map[string]any{"shouldExist": []string{e2eKarg}},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// e2eKarg is the Ignition machine's kernel argument: harmless, and on the
// allowlist a Secure Boot image's grub.cfg takes from grub/kargs
// (node.SecureBootKargs), since make image's image is signed. The
// kernel's default is always, so madvise shows it took effect.
const e2eKarg = "transparent_hugepage=madvise"

// checkIgnitionKargs: pith-init applied kernelArguments (arg alone) on
// first boot with exactly one reboot, the boot after found them in
// effect, and the running kernel has arg from the ESP's grub/kargs.
func checkIgnitionKargs(t *testing.T, n *Node, arg string) {
	if got := n.Run("cat /proc/cmdline"); !slices.Contains(strings.Fields(got), arg) {
		t.Errorf("/proc/cmdline lacks %s: %q", arg, got)
	}
	if got := n.Run("sudo grep -a -o '^pith_kargs=.*' /boot/grub/kargs"); got != "pith_kargs="+arg {
		t.Errorf("/boot/grub/kargs has %q, want pith_kargs=%s", got, arg)
	}
	console := n.ConsoleText()
	for _, c := range []struct {
		line string
		want int
	}{
		{"ignition: kernel arguments changed (+" + arg + "): rebooting once", 1},
		{"ignition: kernel arguments already in effect", 1},
		{"ignition: kernelArguments not applied", 0},
	} {
		if got := strings.Count(console, c.line); got != c.want {
			t.Errorf("the console has %q %d times, want %d", c.line, got, c.want)
		}
	}
	t.Logf("initramfs kargs stage:\n%s", grepLines(console, "ignition: kernel"))
}

// e2eDataPath is where the Ignition machine's second disk's ext4 is mounted.
const e2eDataPath = "/var/lib/e2edata"

// e2eFS is one of the second disk's other filesystems: partition, GPT
// label, format, filesystem label and mount path.
type e2eFS struct {
	part                           int
	partLabel, format, label, path string
}

// The vfat label is upper case: mkfs.fat warns about lower case ones.
var (
	e2eXFS  = e2eFS{2, "e2exfs", "xfs", "e2exfs", "/var/lib/e2exfs"}
	e2eVFAT = e2eFS{3, "e2evfat", "vfat", "E2EVFAT", "/var/lib/e2evfat"}
)

// checkIgnitionStorage: the initramfs partitioned the second disk and
// made ext4, xfs and vfat on it before switch_root, systemd mounted them
// (ext4 at e2eDataPath), and the first-boot stage's files under the ext4
// and xfs paths are on those filesystems.
func checkIgnitionStorage(t *testing.T, n *Node) {
	part := n.Run("readlink -f /dev/disk/by-id/virtio-" + vm.ExtraDiskSerial(0) + "-part1")
	if got := n.Run("findmnt -n -o SOURCE,FSTYPE,OPTIONS " + e2eDataPath); !strings.HasPrefix(got, part+" ext4 ") || !strings.Contains(got, "noatime") {
		t.Errorf("findmnt %s = %q, want %s (the second disk's partition 1) ext4 with noatime", e2eDataPath, got, part)
	}
	if got := n.Run("sudo blkid -p -s PART_ENTRY_NAME -s LABEL -o value " + part + " | sort | tr '\\n' ' '"); got != "e2edata e2edata" {
		t.Errorf("%s partition and filesystem labels: %q, want e2edata e2edata", part, got)
	}
	if got := n.Run("findmnt -n -o TARGET -T " + e2eDataPath + "/hello"); got != e2eDataPath {
		t.Errorf("%s/hello is on the filesystem mounted at %q, want %s", e2eDataPath, got, e2eDataPath)
	}
	if got := n.Run("cat " + e2eDataPath + "/hello"); got != strings.TrimSpace(fileContent) {
		t.Errorf("%s/hello = %q", e2eDataPath, got)
	}
	if got := n.Run("systemctl is-enabled var-lib-e2edata.mount; systemctl is-active var-lib-e2edata.mount"); got != "enabled\nactive" {
		t.Errorf("var-lib-e2edata.mount: %q, want enabled and active", got)
	}
	for _, fs := range []e2eFS{e2eXFS, e2eVFAT} {
		part := n.Run(fmt.Sprintf("readlink -f /dev/disk/by-id/virtio-%s-part%d", vm.ExtraDiskSerial(0), fs.part))
		want := part + " " + fs.format + " " + fs.label
		if got := n.Run("sudo findmnt -rn -o SOURCE,FSTYPE,LABEL " + fs.path); got != want {
			t.Errorf("findmnt %s = %q, want %q", fs.path, got, want)
		}
		if got := n.Run("sudo blkid -p -s PART_ENTRY_NAME -o value " + part); got != fs.partLabel {
			t.Errorf("%s partition label %q, want %s", part, got, fs.partLabel)
		}
	}
	if got := n.Run("findmnt -n -o TARGET -T " + e2eXFS.path + "/hello"); got != e2eXFS.path {
		t.Errorf("%s/hello is on the filesystem mounted at %q, want %s", e2eXFS.path, got, e2eXFS.path)
	}
	if got := n.Run("cat " + e2eXFS.path + "/hello"); got != strings.TrimSpace(fileContent) {
		t.Errorf("%s/hello = %q", e2eXFS.path, got)
	}
	if console := n.ConsoleText(); !strings.Contains(console, "Ignition storage: done") {
		t.Errorf("the console lacks pith-init's 'Ignition storage: done'")
	}
	t.Logf("initramfs storage stage:\n%s", grepLines(n.ConsoleText(), "Ignition storage"))
}

// The Ignition machine's array and LUKS volume (names in its config).
const e2eRaid, e2eLuks = "e2edocker", "e2ecrypt"

// checkIgnitionRaidLuks: the initramfs built a RAID1 over the third and
// fourth disks and a LUKS2 volume on it bound to the TPM (no other key
// slot), systemd-cryptsetup opened it from crypttab without a passphrase
// and docker's directory is its ext4; a file written there and an image
// docker stores there are back after a reboot, the volume unlocked by the
// TPM again. ROOT, encrypted too, is checked before and after the reboot
// (checkRootLuks). Reboots the machine (last of its checks).
func checkIgnitionRaidLuks(t *testing.T, n *Node) {
	check := func(when string) {
		// Kernel names change between boots (vdb may be the boot disk).
		var members []string
		for _, i := range []int{1, 2} {
			members = append(members, strings.TrimPrefix(n.Run("readlink -f /dev/disk/by-id/virtio-"+vm.ExtraDiskSerial(i)), "/dev/"))
		}
		mdstat := n.Run("cat /proc/mdstat")
		if !strings.Contains(mdstat, ": active raid1 ") || !strings.Contains(mdstat, members[0]+"[") || !strings.Contains(mdstat, members[1]+"[") {
			t.Errorf("%s: /proc/mdstat has no active raid1 of %v:\n%s", when, members, mdstat)
		}
		md := n.Run("readlink -f /dev/md/" + e2eRaid)
		st := n.Run("sudo cryptsetup status " + e2eLuks)
		if !regexp.MustCompile(`(?m)^\s+type:\s+LUKS2$`).MatchString(st) || !regexp.MustCompile(`(?m)^\s+device:\s+`+regexp.QuoteMeta(md)+`$`).MatchString(st) {
			t.Errorf("%s: cryptsetup status %s (want LUKS2 on %s, /dev/md/%s):\n%s", when, e2eLuks, md, e2eRaid, st)
		}
		if got := n.Run("findmnt -n -r -o SOURCE,FSTYPE,LABEL /var/lib/docker"); got != "/dev/mapper/"+e2eLuks+" ext4 e2edocker" {
			t.Errorf("%s: findmnt /var/lib/docker = %q, want /dev/mapper/%s ext4 e2edocker", when, got, e2eLuks)
		}
		unit := "systemd-cryptsetup@" + e2eLuks + ".service"
		if got := n.Run("systemctl show -p ActiveState --value " + unit + " && systemctl show -p Result --value " + unit); got != "active\nsuccess" {
			t.Errorf("%s: %s: %q, want active and success", when, unit, got)
		}
		journal := n.Run("sudo journalctl -b --no-pager -o cat -u " + unit)
		if strings.Contains(strings.ToLower(journal), "passphrase") {
			t.Errorf("%s: %s asked for a passphrase:\n%s", when, unit, journal)
		}
		t.Logf("%s: %s:\n%s", when, unit, journal)
		checkRootLuks(t, n, when)
	}
	check("first boot")
	benchLuksRead(t, n)
	// The generated key is gone: the TPM's token slot is the only one.
	dump := n.Run("sudo cryptsetup luksDump /dev/md/" + e2eRaid)
	if slots := regexp.MustCompile(`(?m)^\s+\d+: luks2$`).FindAllString(dump, -1); len(slots) != 1 || !strings.Contains(dump, "systemd-tpm2") {
		t.Errorf("luksDump: %d key slots, want the TPM2 token's only:\n%s", len(slots), dump)
	}
	if got := n.Run("grep -c '^" + e2eLuks + " UUID=.* none luks,tpm2-device=auto$' /etc/crypttab; grep -c '^ARRAY /dev/md/" + e2eRaid + " ' /etc/mdadm/mdadm.conf; sudo find /etc/pith/luks -type f 2>/dev/null | wc -l"); got != "1\n1\n0" {
		t.Errorf("crypttab line, mdadm.conf ARRAY line, kept keys: %q, want 1, 1 and none", got)
	}
	const marker = "survives a reboot on LUKS on RAID1"
	n.Run("echo '" + marker + "' | sudo tee /var/lib/docker/e2e-marker >/dev/null && sync")
	n.Run("echo '" + rootMarker + "' | sudo tee " + rootMarkerPath + " >/dev/null && sync")
	// Docker keeps an image there (its data root is /var/lib/docker).
	const image = "pith-e2e/on-luks:1"
	n.RunInput("sudo docker import - "+image+" >/dev/null", bytes.NewReader(helloImageTarGz(t)))
	id := n.Run("sudo docker image inspect -f '{{.Id}}' " + image)
	if root := n.Run("sudo docker info -f '{{.DockerRootDir}}'"); root != "/var/lib/docker" {
		t.Errorf("docker's data root is %q, want /var/lib/docker", root)
	}
	n.Run("sync")
	t.Logf("reboot took %s", n.Reboot().Round(100*time.Millisecond))
	n.WaitSSH()
	check("after a reboot")
	if got := n.Run("sudo cat /var/lib/docker/e2e-marker"); got != marker {
		t.Errorf("after a reboot /var/lib/docker/e2e-marker = %q, want %q", got, marker)
	}
	if got := n.Run("sudo docker image inspect -f '{{.Id}}' " + image); got != id {
		t.Errorf("after a reboot docker's image %s is %q, want %q", image, got, id)
	}
	if got := n.Run("sudo cat " + rootMarkerPath + "; findmnt -n -o TARGET -T " + rootMarkerPath); got != rootMarker+"\n/" {
		t.Errorf("after a reboot %s (and the mount it is on): %q, want %q on /", rootMarkerPath, got, rootMarker)
	}
}

// benchLuksRead is issue 17's LUKS2 throughput figure (a measurement, not
// a check): 64 MiB read with O_DIRECT through the volume (decrypting) and
// from the array under it.
func benchLuksRead(t *testing.T, n *Node) {
	for _, dev := range []string{"/dev/mapper/" + e2eLuks, "/dev/md/" + e2eRaid} {
		out := n.Run("sudo dd if=" + dev + " of=/dev/null bs=1M count=64 iflag=direct 2>&1 | tail -n1")
		t.Logf("BENCH read 64 MiB (O_DIRECT, TCG or KVM as logged) from %s: %s", dev, out)
	}
}

// The Ignition machine's encrypted ROOT: its volume's name, and a file
// written on it before the reboot.
const (
	e2eRootLuks    = "root"
	rootMarker     = "survives a reboot on the encrypted ROOT"
	rootMarkerPath = "/var/lib/pith-e2e-root-marker"
)

// checkRootLuks: / is the ext4 labelled ROOT on /dev/mapper/root, LUKS2 on
// the ROOT partition whose only key slot is the TPM's (the systemd-tpm2
// token; the generated key removed) and whose subsystem names the volume;
// pith-init opened it (no crypttab line, so systemd does not open it
// again): on first boot after encrypting it (its console says so once),
// on the boots after through the TPM.
func checkRootLuks(t *testing.T, n *Node, when string) {
	// The label by blkid -p: udev has no properties for a device-mapper
	// device made before it ran, so findmnt would not show it.
	if got := n.Run("findmnt -n -r -o SOURCE,FSTYPE /; sudo blkid -p -s LABEL -o value /dev/mapper/" + e2eRootLuks); got != "/dev/mapper/"+e2eRootLuks+" ext4\nROOT" {
		t.Errorf("%s: findmnt / and its label = %q, want /dev/mapper/%s ext4, labelled ROOT", when, got, e2eRootLuks)
	}
	part := n.Run("readlink -f /dev/disk/by-partlabel/ROOT")
	st := n.Run("sudo cryptsetup status " + e2eRootLuks)
	if !regexp.MustCompile(`(?m)^\s+type:\s+LUKS2$`).MatchString(st) || !regexp.MustCompile(`(?m)^\s+device:\s+`+regexp.QuoteMeta(part)+`$`).MatchString(st) {
		t.Errorf("%s: cryptsetup status %s (want LUKS2 on %s, the ROOT partition):\n%s", when, e2eRootLuks, part, st)
	}
	dump := n.Run("sudo cryptsetup luksDump " + part)
	slots := regexp.MustCompile(`(?m)^\s+\d+: luks2$`).FindAllString(dump, -1)
	if len(slots) != 1 || !regexp.MustCompile(`(?m)^\s+\d+: systemd-tpm2$`).MatchString(dump) || !regexp.MustCompile(`(?m)^Subsystem:\s+pith-root:`+e2eRootLuks+`$`).MatchString(dump) {
		t.Errorf("%s: luksDump %s: %d key slots, want the systemd-tpm2 token's only and subsystem pith-root:%s:\n%s", when, part, len(slots), e2eRootLuks, dump)
	}
	if got := n.Run("cat /etc/crypttab 2>/dev/null | grep -c '^" + e2eRootLuks + " ' || true"); got != "0" {
		t.Errorf("%s: /etc/crypttab has %s lines for ROOT's volume, want none (pith-init opens it)", when, got)
	}
	console := n.ConsoleText()
	encrypted := strings.Count(console, "Ignition storage: ROOT is encrypted: its files are on /dev/mapper/"+e2eRootLuks)
	opened := strings.Count(console, "opened ROOT ("+part+") as /dev/mapper/"+e2eRootLuks+" through the TPM")
	if wantOpened := map[bool]int{true: 0, false: 1}[when == "first boot"]; encrypted != 1 || opened != wantOpened {
		t.Errorf("%s: the console says ROOT was encrypted %d times (want 1) and opened by pith-init %d times (want %d)", when, encrypted, opened, wantOpened)
	}
	t.Logf("%s: pith-init on ROOT:\n%s", when, grepLines(console, "ROOT"))
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}

// invalidUserData has errors of several kinds; all must be reported.
const invalidUserData = `#cloud-config
hostname: not_a_valid_host!
write_files:
  - path: relative/path
    permissions: '0999'
    content: x
coreos:
  update:
    reboot-strategy: sometimes
  units:
    - name: nosuffix
      command: start
`

// TestFirstBoot (issue 4): three machines booted at once. One with a
// cloud-config (hostname, a user with an SSH key, write_files, a unit
// running a container from an offline image), one with the same in
// Ignition, one with invalid user-data that must be rejected without
// bricking the node. All three start before any check, so the test takes
// one boot's time whatever go test's -parallel is. A fourth machine, with a
// #! script, has its power cut at the end of first boot and is booted again
// meanwhile (scriptCutBoot). Once the invalid machine's checks end, a
// fifth, in its place, has an Ignition config that cannot be applied and
// must stop its boot (checkIgnitionStops).
func TestFirstBoot(t *testing.T) {
	// Up to four guests at once: the three user-data machines and the #!
	// script machine whose power is cut, booted again beside them.
	NeedVMs(t, 4, 8*time.Minute)
	type machine struct {
		name, user, hostname string
		userData             func(t *testing.T, pub string) string
		extraDisk            bool // three blank 1 GiB disks and a TPM
		key                  ssh.Signer
		c                    *Cluster
	}
	ms := []*machine{
		{name: "cloud-config", user: "alice", hostname: "e2e-cc", userData: cloudConfigUserData},
		{name: "ignition", user: "bob", hostname: "e2e-ign", userData: ignitionUserData, extraDisk: true},
		{name: "invalid", userData: func(*testing.T, string) string { return invalidUserData }},
	}
	for _, m := range ms {
		var pub string
		m.key, pub = newUserKey(t)
		ud := m.userData(t, pub)
		o := Options{UserData: writeUserData(t, m.name+".user-data", ud)}
		if m.extraDisk {
			// Partitions on the first, the RAID1 on the other two.
			for i := range 3 {
				disk := filepath.Join(t.TempDir(), fmt.Sprintf("extra%d.img", i))
				if err := os.WriteFile(disk, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(disk, 1<<30); err != nil {
					t.Fatal(err)
				}
				o.ExtraDisks = append(o.ExtraDisks, disk)
			}
			o.TPM = true
		}
		m.c = Boot(t, o)
		t.Logf("%s: %s, user-data %d KiB", m.name, m.c.Nodes[0], len(ud)>>10)
	}
	cut := scriptCutBoot(t)
	ups := upAll(t, []*Node{ms[0].c.Nodes[0], ms[1].c.Nodes[0], ms[2].c.Nodes[0]})
	for i, m := range ms {
		t.Logf("MEASURE %s: qemu-start->login-prompt=%s qemu-start->ssh-ready=%s", m.name, ups[i].login.Round(100*time.Millisecond), ups[i].ssh.Round(100*time.Millisecond))
	}
	// The machines are all up: their checks (dockerd loading an image
	// under TCG takes most of a minute) run side by side. Each machine is
	// switched off when its checks end, and the slots of those no longer
	// running go to the next test (the Ignition machine runs longest).
	parent := t
	var mu sync.Mutex
	running := len(ms) + 1
	done := func(c *Cluster) {
		c.PowerOff()
		mu.Lock()
		running--
		FewerVMs(parent, running)
		mu.Unlock()
	}
	for _, m := range ms {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			defer done(m.c)
			n := m.c.Nodes[0]
			n.t = t
			if m.user == "" {
				checkRejected(t, n)
				// Its guest's place then goes to a short-lived one
				// whose Ignition config stops the boot, beside the
				// Ignition machine's longer checks.
				m.c.PowerOff()
				checkIgnitionStops(t)
				return
			}
			checkApplied(t, n, m.user, m.key, m.hostname)
			if m.extraDisk {
				checkIgnitionKargs(t, n, e2eKarg)
				if got := n.Run("cat /sys/kernel/mm/transparent_hugepage/enabled"); !strings.Contains(got, "[madvise]") {
					t.Errorf("transparent_hugepage/enabled = %q, want [madvise] (%s)", got, e2eKarg)
				}
				checkIgnitionStorage(t, n)
				checkIgnitionRaidLuks(t, n)
			}
		})
	}
	t.Run("script cut", func(t *testing.T) {
		t.Parallel()
		defer done(cut)
		n := cut.Nodes[0]
		n.t = t
		checkScriptCut(t, n)
	})
}

// checkApplied logs in as the configured user, with the configured key, and
// checks everything the config asked for.
func checkApplied(t *testing.T, n *Node, user string, key ssh.Signer, hostname string) {
	if got := n.RunAs(user, key, "whoami"); got != user {
		t.Fatalf("SSH with %s's key logged in as %q", user, got)
	}
	if got := n.RunAs(user, key, "hostname"); got != hostname {
		t.Errorf("hostname = %q, want %q", got, hostname)
	}
	if got := n.RunAs(user, key, "id -nG"); !strings.Contains(" "+got+" ", " docker ") {
		t.Errorf("%s's groups are %q, want docker among them", user, got)
	}
	if got := n.RunAs(user, key, "stat -c '%a %U:%G' /etc/pith-e2e/motd"); got != "640 "+user+":"+user {
		t.Errorf("/etc/pith-e2e/motd: mode and owner %q, want 640 %s:%s", got, user, user)
	}
	if got, _ := n.ExecAs(user, key, "cat /etc/pith-e2e/motd"); string(got.Stdout) != fileContent {
		t.Errorf("/etc/pith-e2e/motd = %q, want %q", got.Stdout, fileContent)
	}
	// The first-boot stage started hello.path, which waits for the image.
	if got := n.RunAs(user, key, "systemctl is-active hello.path"); got != "active" {
		t.Errorf("hello.path is %q, want active (started by the config)", got)
	}
	n.loadHelloImage(t)
	// dockerd and the image import under TCG take a while: wait for the
	// container to answer.
	want := "hello from " + hostname
	took := n.Poll("hello.service answering on :8080", 3*time.Second, func() (bool, string) {
		r, err := n.ExecAs(user, key, httpGetScript("8080"))
		if err != nil {
			return false, err.Error()
		}
		body := strings.TrimSpace(string(r.Stdout))
		if body == want {
			return true, ""
		}
		st, _ := n.ExecAs(user, key, "systemctl is-active hello.service; systemctl status --no-pager -n 5 hello.service")
		return false, fmt.Sprintf("body %q; %s", body, st.Stdout)
	})
	t.Logf("MEASURE container answering %s after SSH was ready", took.Round(100*time.Millisecond))
	if got := n.RunAs(user, key, "systemctl is-active hello.service"); got != "active" {
		t.Errorf("hello.service is %q", got)
	}
	if got := n.RunAs(user, key, "docker inspect -f '{{.Config.Image}} {{.State.Running}}' hello"); got != helloImageName+" true" {
		t.Errorf("docker inspect hello: %q, want %q", got, helloImageName+" true")
	}
	if got := n.RunAs(user, key, "docker image inspect -f '{{len .RootFS.Layers}}' "+helloImageName); got != "1" {
		t.Errorf("image %s has %s layers, want the 1 imported", helloImageName, got)
	}
	st := n.RunAs(user, key, "pithctl userdata")
	if !strings.Contains(st, "status:     applied") {
		t.Errorf("pithctl userdata:\n%s", st)
	}
	t.Logf("pithctl userdata:\n%s", st)
}

// checkRejected: the node is up, and the console, the journal and pithctl
// all say the user-data was rejected, with every error.
func checkRejected(t *testing.T, n *Node) {
	console := n.ConsoleText()
	journal := n.Run("sudo journalctl -b --no-pager -o cat -t pithd-firstboot")
	r := n.Exec("pithctl userdata")
	status := string(r.Stdout) + string(r.Stderr)
	t.Logf("pithctl userdata (exit %d):\n%s", r.ExitStatus, status)
	if r.ExitStatus == 0 || !strings.Contains(status, "REJECTED") {
		t.Errorf("pithctl userdata does not say the user-data was rejected (exit %d)", r.ExitStatus)
	}
	// The node's overall status leads with it too.
	if r := n.Exec("sudo pithctl status"); r.ExitStatus == 0 || !strings.Contains(string(r.Stdout), "REJECTED") {
		t.Errorf("pithctl status does not say the user-data was rejected (exit %d):\n%s%s", r.ExitStatus, r.Stdout, r.Stderr)
	}
	// Each error, with its line, in all three places.
	for _, want := range []string{
		"user-data:2:",  // hostname
		"user-data:4:",  // relative path
		"user-data:5:",  // file mode
		"user-data:9:",  // reboot strategy
		"user-data:11:", // unit name
	} {
		for where, text := range map[string]string{"console": console, "journal": journal, "pithctl userdata": status} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks an error at %s", where, want)
			}
		}
	}
	if got := n.Run("hostname"); got == "not_a_valid_host!" {
		t.Errorf("the rejected hostname was applied")
	}
	if n.Exec("test -e relative/path -o -e /relative/path").ExitStatus == 0 {
		t.Errorf("a file of the rejected user-data was written")
	}
	if got := n.Exec("systemctl is-failed pithd-firstboot.service"); strings.TrimSpace(string(got.Stdout)) != "failed" {
		t.Errorf("pithd-firstboot.service is %q, want failed (it reports the rejection)", strings.TrimSpace(string(got.Stdout)))
	}
	if got := strings.TrimSpace(string(n.Exec("systemctl is-system-running --wait").Stdout)); got != "degraded" {
		t.Logf("is-system-running: %q", got)
	}
}

// oemCloudConfig is what TestFirstBootOEM puts on the image's OEM partition.
func oemCloudConfig(pub string) string {
	return `#cloud-config
users:
  - name: oemuser
    gecos: From the OEM partition
    ssh-authorized-keys:
      - ` + pub + `
write_files:
  - path: /etc/pith-e2e/oem
    content: from the OEM partition
`
}

// bigUserData is a cloud-config of about size bytes (most of it one
// write_files entry) with networkd files in coreos.units: a dummy link and
// an address on it (a documentation range; no traffic leaves the guest).
func bigUserData(size int) (text string, bigSum string) {
	line := strings.Repeat("0123456789abcdef", 4)[:63] + "\n"
	var big strings.Builder
	for big.Len() < size {
		big.WriteString(line)
	}
	sum := sha256.Sum256([]byte(big.String()))
	return `#cloud-config
hostname: e2e-oem
write_files:
  - path: /etc/pith-e2e/big
    content: |
` + "      " + strings.ReplaceAll(strings.TrimSuffix(big.String(), "\n"), "\n", "\n      ") + `
coreos:
  units:
    - name: 50-e2e-dummy.netdev
      content: |
        [NetDev]
        Name=e2edummy0
        Kind=dummy
    - name: 50-e2e-dummy.network
      content: |
        [Match]
        Name=e2edummy0
        [Network]
        Address=198.51.100.7/24
`, hex.EncodeToString(sum[:])
}

// TestFirstBootOEM (issues 4 and 8): the OEM partition is mounted at
// /usr/share/oem and its cloud-config applied before the user-data; the
// user-data (1 MiB, through fw_cfg) brings networkd files; pithctl
// userdata apply re-applies it without changing anything, then applies a
// new one and says what changed. Its BIOS boot, on a disk larger than the
// image, is also checkBooted's (TestEC2 checks the UEFI boot), and it
// runs the RSA host key's service.
func TestFirstBootOEM(t *testing.T) {
	NeedVMs(t, 1, 2*time.Minute)
	base := bootImagePath(t)
	oemKey, oemPub := newUserKey(t)
	img := filepath.Join(t.TempDir(), "pith-oem.qcow2")
	if err := box.AddOEMFiles(context.Background(), base, img, map[string]string{"cloud-config.yml": oemCloudConfig(oemPub)}, 1767225600); err != nil {
		t.Fatal(err)
	}
	ud, bigSum := bigUserData(1 << 20)
	const disk = 5 << 30 // the image is 4 GiB: ROOT's growth must show
	c := Boot(t, Options{Image: img, UserData: writeUserData(t, "oem.user-data", ud), DiskSize: disk})
	n := c.Nodes[0]
	t.Logf("%s: user-data %d KiB", n, len(ud)>>10)
	up := upAll(t, []*Node{n})[0]
	t.Logf("MEASURE qemu-start->ssh-ready=%s", up.ssh.Round(100*time.Millisecond))
	checkBooted(t, n.M.Config.Firmware, builtImageDir(t), disk, n.sh) // BIOS, the default
	// The RSA host key's service, which its timer starts 10 minutes in.
	n.Run("sudo systemctl start pith-ssh-keygen-rsa.service")
	if got := n.Run("sudo ssh-keygen -l -f /etc/ssh/ssh_host_rsa_key"); !strings.HasPrefix(got, "3072 ") || !strings.HasSuffix(got, "(RSA)") {
		t.Errorf("pith-ssh-keygen-rsa.service made no 3072-bit RSA host key: %q", got)
	}

	// The mount: OEM, ext4, read-only, from the partition labelled OEM.
	mnt := n.Run("findmnt -no SOURCE,FSTYPE,OPTIONS /usr/share/oem")
	dev := n.Run("readlink -f /dev/disk/by-partlabel/OEM")
	if f := strings.Fields(mnt); len(f) != 3 || f[0] != dev || f[1] != "ext4" || !strings.HasPrefix(f[2], "ro,") {
		t.Errorf("/usr/share/oem: findmnt %q, OEM partition %q", mnt, dev)
	}
	if got := n.Run("cat /usr/share/oem/pith/platform"); got == "" {
		t.Error("the OEM partition's platform file is not readable")
	}
	// Its cloud-config applied: the user logs in with its key.
	if got := n.RunAs("oemuser", oemKey, "whoami; cat /etc/pith-e2e/oem"); got != "oemuser\nfrom the OEM partition" {
		t.Errorf("OEM user and file: %q", got)
	}
	if got := n.Run("sudo cat /var/lib/pith/oem.json"); !strings.Contains(got, `"applied": true`) || !strings.Contains(got, `"source": "oem"`) {
		t.Errorf("oem.json:\n%s", got)
	}
	// Before the user-data, in the stage's log.
	journal := n.Run("sudo journalctl -b --no-pager -o cat -t pithd-firstboot")
	iOEM, iUD := strings.Index(journal, "OEM cloud-config (/usr/share/oem/cloud-config.yml) applied"), strings.Index(journal, "user-data from qemu-fw-cfg")
	if iOEM < 0 || iUD < 0 || iOEM > iUD {
		t.Errorf("OEM config not applied before the user-data:\n%s", journal)
	}

	// 1 MiB through fw_cfg: read once through the I/O ports.
	re := regexp.MustCompile(`user-data from qemu-fw-cfg \((\d+) bytes, read through (.*) in (\S+)\)`)
	m := re.FindStringSubmatch(journal)
	if m == nil || m[2] != "fw_cfg I/O ports" {
		t.Errorf("fw_cfg read not through the ports: %q", m)
	} else {
		t.Logf("MEASURE fw_cfg user-data %s bytes read through %s in %s", m[1], m[2], m[3])
	}
	if got := n.Run("sha256sum < /etc/pith-e2e/big"); !strings.HasPrefix(got, bigSum) {
		t.Errorf("/etc/pith-e2e/big: sha256 %q, want %s", got, bigSum)
	}
	// The old way for comparison: the kernel's sysfs file, page by page.
	if got := n.Run(`sudo bash -c 'TIMEFORMAT="%R s"; { time cat /sys/firmware/qemu_fw_cfg/by_name/opt/org.pith/user-data/raw | wc -c; } 2>&1'`); got != "" {
		t.Logf("MEASURE fw_cfg user-data read through sysfs (bytes, time): %q", strings.ReplaceAll(got, "\n", " in "))
	}

	// networkd's files: written, networkd restarted, the link configured.
	if got := n.Run("cat /etc/systemd/network/50-e2e-dummy.network"); !strings.Contains(got, "Address=198.51.100.7/24") {
		t.Errorf("50-e2e-dummy.network: %q", got)
	}
	n.Poll("e2edummy0 configured by networkd", 3*time.Second, func() (bool, string) {
		out, _ := n.try("ip -4 -o addr show dev e2edummy0")
		return strings.Contains(out, "198.51.100.7/24"), out
	})

	// Apply again now: nothing changes.
	r := n.Exec("sudo pithctl userdata apply")
	out := string(r.Stdout) + string(r.Stderr)
	if r.ExitStatus != 0 || !strings.Contains(out, "changed: nothing") {
		t.Errorf("pithctl userdata apply (exit %d):\n%s", r.ExitStatus, out)
	}
	// A new user-data from a file: exactly its changes.
	n.Run(`printf '#cloud-config\nhostname: e2e-oem\nwrite_files:\n  - path: /etc/pith-e2e/new\n    content: applied now\n' > /tmp/ud2`)
	r = n.Exec("sudo pithctl userdata apply --from-file /tmp/ud2")
	out = string(r.Stdout) + string(r.Stderr)
	if r.ExitStatus != 0 || !strings.Contains(out, "changed (1):\n  wrote /etc/pith-e2e/new\n") {
		t.Errorf("pithctl userdata apply --from-file (exit %d):\n%s", r.ExitStatus, out)
	}
	t.Logf("pithctl userdata apply --from-file:\n%s", out)
	if got := n.Run("cat /etc/pith-e2e/new; echo; systemctl is-active pithd.service"); got != "applied now\nactive" {
		t.Errorf("after apply: %q", got)
	}
}
