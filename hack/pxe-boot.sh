#!/usr/bin/env bash
# make pxe-boot: boot the live PXE artifacts (pith live --formats pxe) the
# way a PXE machine does - the NIC's iPXE ROM (Debian's ipxe-qemu) asks
# QEMU's own DHCP/TFTP server (-netdev user,tftp=,bootfile=) for
# pith-pxe.ipxe, which loads pith-pxe.vmlinuz and pith-pxe.initrd - and
# wait until the live system answers SSH with the key from its user-data
# (fw_cfg). No disk is attached. Prints the time to SSH. All over TFTP,
# which is slow for the initrd; the suite's TestInstallFromISO/pxe-live
# chains the same files over HTTP instead. FIRMWARE=uefi boots as a UEFI
# machine: OVMF's PXE runs pith-pxe.efi (GRUB), which loads the kernel and
# initrd from the same TFTP server (pxe-live-uefi: over HTTP).
#   OUT=_out bash hack/pxe-boot.sh      (ACCEL=kvm where KVM works)
set -euo pipefail
OUT=${OUT:-_out}
ACCEL=${ACCEL:-tcg}
TIMEOUT=${TIMEOUT:-2400}
FIRMWARE=${FIRMWARE:-bios}
dir=$(mktemp -d /tmp/pith-pxe.XXXXXX)
qpid=
cleanup() {
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
"$OUT/bin/pith" live --image-dir "$OUT" --out "$dir/tftp" --formats pxe
ssh-keygen -q -t ed25519 -N '' -f "$dir/key"
printf '#cloud-config\nssh_authorized_keys:\n  - %s\n' "$(cat "$dir/key.pub")" >"$dir/user-data"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cpu=max
[ "$ACCEL" = kvm ] && cpu=host
case "$FIRMWARE" in
  # SeaBIOS tries the NIC's iPXE ROM first with -boot n.
  bios) fw=(-boot n) bootfile=pith-pxe.ipxe nic=virtio-net-pci,netdev=n0 ;;
  # OVMF ignores -boot: it follows the devices' bootindex.
  uefi)
    cp /usr/share/OVMF/OVMF_VARS.fd "$dir/OVMF_VARS.fd"
    fw=(-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd
      -drive "if=pflash,format=raw,unit=1,file=$dir/OVMF_VARS.fd")
    bootfile=pith-pxe.efi nic=virtio-net-pci,netdev=n0,bootindex=1 ;;
  *) echo "pxe-boot: FIRMWARE=$FIRMWARE: use bios or uefi" >&2; exit 2 ;;
esac
start=$(date +%s)
qemu-system-x86_64 -machine q35 -accel "$ACCEL" -cpu "$cpu" -m 2048 -nodefaults -display none \
  -serial "file:$dir/console.log" "${fw[@]}" \
  -netdev "user,id=n0,restrict=on,tftp=$dir/tftp,bootfile=$bootfile,hostfwd=tcp:127.0.0.1:$port-:22" \
  -device "$nic" \
  -fw_cfg "name=opt/org.pith/user-data,file=$dir/user-data" &
qpid=$!
ssh_() { ssh -i "$dir/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -o LogLevel=ERROR -p "$port" core@127.0.0.1 "$@"; }
until ssh_ true 2>/dev/null; do
  if ! kill -0 "$qpid" 2>/dev/null; then echo "pxe-boot: QEMU exited"; tail -40 "$dir/console.log"; exit 1; fi
  if [ $(($(date +%s) - start)) -ge "$TIMEOUT" ]; then echo "pxe-boot: no SSH after ${TIMEOUT}s"; tail -40 "$dir/console.log"; exit 1; fi
  sleep 5
done
echo "pxe-boot: the live system answers SSH $(($(date +%s) - start)) s after QEMU started (accel $ACCEL, firmware $FIRMWARE)"
grep -m1 -o 'live: ROOT is a tmpfs.*' "$dir/console.log" || true
ssh_ 'cat /proc/cmdline; sudo dmsetup table usr | cut -c1-80; findmnt -no SOURCE,FSTYPE /'
