package box

import "strings"

// InsecurePublicKey is Vagrant's well-known insecure public key (its
// keys/vagrant.pub). Vagrant logs in with the matching private key until a
// box says otherwise; it is public on purpose and only fit for local VMs.
const InsecurePublicKey = "ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key"

// User is the account Vagrant logs in as: Vagrant's default.
const User = "vagrant"

// Vagrantfile is the Vagrantfile inside the box: the libvirt provider's
// defaults for every machine made from it. A project's Vagrantfile is
// merged over it and may change any of them.
func Vagrantfile() string {
	var b strings.Builder
	b.WriteString(`# Defaults of the Pith box for Vagrant's libvirt provider (written by
# pith box). A project's Vagrantfile is merged over this one.
Vagrant.configure("2") do |config|
  # Pith is Debian underneath and configures NICs with systemd-networkd:
  # Vagrant's Debian guest support then sets hostnames and private
  # networks (/etc/systemd/network/50-vagrant-*.network).
  config.vm.guest = :debian
  # The vagrant user (insecure key, passwordless sudo) comes from the box's
  # OEM partition (/usr/share/oem/cloud-config.yml), which pithd applies on
  # first boot: nothing has to be passed to QEMU.
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
	b.WriteString("  end\nend\n")
	return b.String()
}
