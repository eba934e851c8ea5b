#!/usr/bin/env bash
# What Secure Boot costs a boot (issue 16's benchmark): the image built
# unsigned (from make image's cache) under OVMF without Secure Boot, against
# the same image signed with fresh Secure Boot keys (pith build
# --secure-boot-keys) booted as pith boot boots a signed image by default:
# OVMF's Secure Boot build, the keys enrolled. Both verify /usr with dm-verity (every image
# does). For each boot it prints the wall time until SSH answers, the
# QEMU process's CPU seconds by then and the guest's SecureBoot variable
# (01 is required of the Secure Boot boot, refused of the others); the
# kinds alternate round by round, so all see the same load.
# Usage (after make image):
#   hack/boot-sb.sh              (3 rounds)
#   ROUNDS=5 TPM=1 hack/boot-sb.sh   (TPM=1: both boots get a TPM 2.0)
#   KINDS="uefi signed secure-boot" hack/boot-sb.sh
# "signed" boots the signed image with OVMF's plain build: GRUB checks
# its signatures, the firmware checks nothing (no SMM), which splits
# GRUB's share of the cost from the firmware's.
# Needs: bc.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PITH=${PITH:-$ROOT/_out/bin/pith}
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pith}
ROUNDS=${ROUNDS:-3}
STATE=$(mktemp -d)
trap 'for d in "$STATE"/run-*/; do [ -d "$d" ] && "$PITH" boot stop --state "$d" >/dev/null 2>&1 || true; done; rm -rf "$STATE"' EXIT
printf '#cloud-config\nhostname: boot-sb\n' >"$STATE/user-data"

"$PITH" keygen --secure-boot --out "$STATE/keys" >/dev/null
# make image signs with its development keys: the unsigned one is built here.
"$PITH" build --out "$STATE/plain" --cache "$CACHE" --formats qcow2 >"$STATE/build-plain.log" 2>&1 ||
	{ cat "$STATE/build-plain.log"; exit 1; }
start=$(date +%s.%N)
"$PITH" build --out "$STATE/sb" --cache "$CACHE" --secure-boot-keys "$STATE/keys" --formats qcow2 >"$STATE/build.log" 2>&1 ||
	{ cat "$STATE/build.log"; exit 1; }
printf 'signed image built in %.1f s (warm cache)\n' "$(echo "$(date +%s.%N) - $start" | bc)"

tpm=()
[ "${TPM:-}" = 1 ] && tpm=(--tpm)

# cpu PID: CPU seconds (user+system) the process used so far.
cpu() { echo "scale=2; $(awk '{print $14 + $15}' "/proc/$1/stat") / $(getconf CLK_TCK)" | bc; }

for r in $(seq "$ROUNDS"); do
	for kind in ${KINDS:-uefi secure-boot}; do
		st=$STATE/run-$r-$kind
		case $kind in
		uefi) args=(--image "$STATE/plain/pith.qcow2" --firmware uefi) ;;
		signed) args=(--image "$STATE/sb/pith.qcow2" --firmware uefi --secure-boot=false) ;;
		# No flags: pith boot picks UEFI and Secure Boot for a signed image.
		secure-boot) args=(--image "$STATE/sb/pith.qcow2") ;;
		*) echo "unknown kind $kind: uefi, signed or secure-boot" >&2; exit 2 ;;
		esac
		s=$(date +%s.%N)
		# pith boot returns once SSH answers.
		"$PITH" boot "${args[@]}" "${tpm[@]}" --state "$st" --user-data "$STATE/user-data" \
			--detach --quiet >/dev/null
		wall=$(echo "$(date +%s.%N) - $s" | bc)
		c=$(cpu "$(cat "$st/node1/qemu.pid")")
		# The SecureBoot variable's last byte: 1 when the firmware enforces it.
		sb=$("$PITH" boot ssh --state "$st" node1 -- \
			'sudo od -An -tx1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null | awk "{print \$NF}"')
		"$PITH" boot stop --state "$st" >/dev/null
		if [ "$kind" = secure-boot ] && [ "$sb" != 01 ] || [ "$kind" != secure-boot ] && [ "$sb" = 01 ]; then
			echo "$kind: the guest's SecureBoot variable ends in '$sb'" >&2
			exit 1
		fi
		printf 'round %s  %-12s SSH after %6.1f s   QEMU CPU %6.1f s   SecureBoot %s\n' "$r" "$kind" "$wall" "$c" "${sb:-absent}"
	done
done
