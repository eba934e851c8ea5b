package box

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// InsecurePublicKey is Vagrant's well-known insecure public key (its
// keys/vagrant.pub). Vagrant logs in with the matching private key until a
// box says otherwise; it is public on purpose and only fit for local VMs.
const InsecurePublicKey = "ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key"

// User is the account Vagrant logs in as: Vagrant's default.
const User = "vagrant"

// FwCfgName is the fw_cfg entry pithd's QEMU datasource reads user-data from.
const FwCfgName = "opt/org.pith/user-data"

// Bootstrap is the Ignition config that makes the vagrant user (Vagrant's
// insecure key, passwordless sudo, the same groups as core) on first boot.
// The image does not carry it yet (see the package README): the box's
// Vagrantfile hands it to pithd through QEMU's fw_cfg. It is one line of
// JSON because it travels as a QEMU option inside libvirt's domain XML,
// where line breaks would not survive.
func Bootstrap() string {
	type source struct {
		Source string `json:"source"`
	}
	type file struct {
		Path      string `json:"path"`
		Mode      int    `json:"mode"`
		Overwrite bool   `json:"overwrite"`
		Contents  source `json:"contents"`
	}
	type user struct {
		Name              string   `json:"name"`
		Gecos             string   `json:"gecos"`
		Shell             string   `json:"shell"`
		Groups            []string `json:"groups"`
		SSHAuthorizedKeys []string `json:"sshAuthorizedKeys"`
	}
	sudoers := User + " ALL=(ALL) NOPASSWD: ALL\n"
	cfg := map[string]any{
		"ignition": map[string]string{"version": "3.4.0"},
		"passwd": map[string]any{"users": []user{{
			Name: User, Gecos: "Vagrant", Shell: "/bin/bash",
			Groups:            []string{"adm", "sudo", "docker", "systemd-journal"},
			SSHAuthorizedKeys: []string{InsecurePublicKey},
		}}},
		"storage": map[string]any{"files": []file{{
			Path: "/etc/sudoers.d/" + User, Mode: 0o440, Overwrite: true,
			Contents: source{Source: "data:," + strings.ReplaceAll(url.PathEscape(sudoers), ":", "%3A")},
		}}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // static data
	}
	return string(b)
}

// FwCfgArg is the value of QEMU's -fw_cfg option carrying s inline (QEMU
// doubles commas to escape them).
func FwCfgArg(s string) string {
	return "name=" + FwCfgName + ",string=" + strings.ReplaceAll(s, ",", ",,")
}

// rubyString quotes s as a single-quoted Ruby literal.
func rubyString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Vagrantfile is the Vagrantfile inside the box: the libvirt provider's
// defaults for every machine made from it. A project's Vagrantfile is
// merged over it and may change any of them.
func Vagrantfile(bootstrap bool) string {
	var b strings.Builder
	b.WriteString(`# Defaults of the Pith box for Vagrant's libvirt provider (written by
# pith box). A project's Vagrantfile is merged over this one.
Vagrant.configure("2") do |config|
  # Pith is Debian underneath and configures NICs with systemd-networkd:
  # Vagrant's Debian guest support then sets hostnames and private
  # networks (/etc/systemd/network/50-vagrant-*.network).
  config.vm.guest = :debian
  # Pith rebuilds ~/.ssh/authorized_keys from authorized_keys.d whenever
  # user-data adds keys, so a key Vagrant swapped in would be lost; keep
  # the well-known insecure key (these are local VMs).
  config.ssh.insert_key = false
  config.vm.box_check_update = false
  # The image has rsync; libvirt has no shared-folder driver Pith needs.
  config.vm.synced_folder ".", "/vagrant", type: "rsync"

  config.vm.provider :libvirt do |lv|
    # kvm, or qemu (TCG) where /dev/kvm is missing or cannot run guests.
    driver = ENV.fetch("PITH_LIBVIRT_DRIVER", "kvm")
    lv.driver = driver
    if driver == "qemu"
      # TCG: the widest CPU QEMU emulates (-cpu max), as pith boot uses.
      lv.cpu_mode = "maximum"
    end
    lv.memory = 1024
    lv.cpus = 1
    lv.disk_bus = "virtio"
    lv.nic_model_type = "virtio"
    # The provider's default serial console (a pty) is ttyS0, where the
    # kernel line sends the console: virsh console shows the boot.
    # Entropy from the host: without it first boot's SSH host key
    # generation can wait for minutes under TCG.
    lv.random :model => "random"
    lv.graphics_type = "none"
    lv.video_type = "none"
`)
	if bootstrap {
		fmt.Fprintf(&b, `    # First boot: the vagrant user with Vagrant's insecure key and
    # passwordless sudo, as Ignition through QEMU's fw_cfg (pithd's qemu
    # datasource), until the image's OEM partition carries it. A project
    # Vagrantfile that sets qemuargs replaces these: repeat them there.
    lv.qemuargs :value => "-fw_cfg"
    lv.qemuargs :value => %s
`, rubyString(FwCfgArg(Bootstrap())))
	}
	b.WriteString("  end\nend\n")
	return b.String()
}
