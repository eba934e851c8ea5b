#!/usr/bin/env bash
# Installs the Debian packages Pith's build, demo and tests need, only those
# missing, so repeat runs cost a dpkg query. Packages come from the machine's
# configured Debian apt repositories only.
#   hack/install-deps.sh           the build, boot and test tools
#   hack/install-deps.sh vagrant   also Vagrant with libvirt (the Vagrant test,
#                                  make vagrant-cluster)
#   hack/install-deps.sh arm64     also what pith build/boot --arch arm64 need
set -euo pipefail

pkgs=(
  qemu-system-x86 qemu-utils ovmf            # boot images (pith boot, e2e)
  grub-pc-bin grub-efi-amd64-bin grub-common grub-emu # boot chain (BIOS core.img, the ISO's and pith-pxe.efi's UEFI GRUB; grub-emu runs grub.cfg in tests); the disk's BOOTX64.EFI is GRUB 2.12, which pith build fetches from bookworm-backports
  mmdebstrap                                 # Debian rootfs for /usr
  squashfs-tools erofs-utils zstd            # read-only USR filesystems
  dosfstools mtools e2fsprogs gdisk          # ESP, OEM/ROOT, GPT checks
  xfsprogs                                   # pith install recognizes what mkfs.xfs writes (test)
  xorriso ipxe-qemu                          # live ISO (xorriso -as mkisofs), PXE boot test (iPXE ROMs)
  cpio xz-utils openssh-client               # initramfs checks, VM login
  cryptsetup-bin                             # veritysetup: cross-checks USR dm-verity trees
  sbsigntool faketime swtpm                  # Secure Boot: sbsign (under faketime: reproducible) for EFI binaries; a TPM 2.0 for pith boot --tpm
  iproute2 iptables util-linux               # KV partition test in its own network namespace
  chromium                                   # fleet dashboard test in headless Chromium
)

if [ "${1:-}" = vagrant ]; then
  pkgs+=(
    vagrant vagrant-libvirt               # vagrant up/ssh/destroy with the libvirt provider
    libvirt-daemon-system libvirt-clients # libvirtd, virtlogd, virsh
    dnsmasq-base                          # DHCP on libvirt's networks
  )
fi

if [ "${1:-}" = arm64 ]; then
  pkgs+=(
    qemu-system-arm qemu-efi-aarch64      # pith boot --arch arm64: virt board, AAVMF (UEFI)
    qemu-user-static binfmt-support       # mmdebstrap --architectures=arm64 runs arm64 maintainer scripts
    arch-test                             # mmdebstrap checks with it that arm64 programs can run
  )
  # grub-efi-arm64-bin is built for arm64 only: pith build fetches it from
  # the build's own arm64 apt lists. binfmt_misc is not mounted in many
  # containers; pith build mounts it and enables qemu-aarch64 when root.
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing ${missing[*]}; run as root (or: sudo $0)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists at most once a day: apt-get install fails on a
# fresh machine whose lists were never fetched.
stamp=/var/lib/apt/periodic/pith-update-stamp
if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
  apt-get update -q
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
# Without systemd the packages' postinst scripts cannot start libvirtd; the
# Vagrant test starts it by hand inside its own network namespace.
apt-get install -y -q --no-install-recommends "${missing[@]}"
