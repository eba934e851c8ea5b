#!/usr/bin/env bash
# Installs what the Vagrant test and `make vagrant-cluster` need from
# Debian: Vagrant with the libvirt provider, libvirtd and its dnsmasq (for
# the networks libvirt creates inside the test's network namespace), QEMU.
# Only missing packages are installed, so repeat runs cost a dpkg query.
set -euo pipefail

pkgs=(
  vagrant vagrant-libvirt                 # vagrant up/ssh/destroy with the libvirt provider
  libvirt-daemon-system libvirt-clients   # libvirtd, virtlogd, virsh
  dnsmasq-base                            # DHCP on libvirt's networks
  qemu-system-x86 qemu-utils              # the domains themselves (TCG when KVM is unusable)
  iproute2                                # ip netns for the test's isolated network
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "vagrant deps: all ${#pkgs[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "vagrant deps: missing ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
echo "vagrant deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/pith-update-stamp
if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
  apt-get update -q
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
# Without systemd the packages' postinst scripts cannot start libvirtd; the
# test starts it by hand inside its own network namespace.
apt-get install -y -q --no-install-recommends "${missing[@]}"
