#!/usr/bin/env bash
# What a TCG guest costs on each QEMU CPU model: boots the built image with
# `pith boot` (PITH_QEMU_CPU picks the model), and for each boot prints the
# QEMU process's CPU seconds until SSH answers (just after the login
# prompt) and for a sha256sum of USR-A inside the guest (page cache dropped
# first), with the guest's own time for it. Models alternate round by round, so both see the same load.
# Usage (after make image):
#   hack/tcg-cpu.sh                       (the default model against max, 3 rounds)
#   ROUNDS=5 hack/tcg-cpu.sh default max qemu64
# "default" is the model vm uses (vm.tcgCPU). Needs: bc.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PITH=${PITH:-$ROOT/_out/bin/pith}
IMAGE=${IMAGE:-$ROOT/_out/pith.qcow2}
ROUNDS=${ROUNDS:-3}
[ $# -gt 0 ] || set -- default max
STATE=$(mktemp -d)
trap 'for d in "$STATE"/*/; do "$PITH" boot stop --state "$d" >/dev/null 2>&1 || true; done; rm -rf "$STATE"' EXIT
printf '#cloud-config\nhostname: tcg-cpu\n' >"$STATE/user-data"

# cpu PID: CPU seconds (user+system) the process used so far.
cpu() { echo "scale=2; $(awk '{print $14 + $15}' "/proc/$1/stat") / $(getconf CLK_TCK)" | bc; }

for r in $(seq "$ROUNDS"); do
	for model in "$@"; do
		st=$STATE/$r-${model//[^a-zA-Z0-9]/_}
		env_cpu=$model
		[ "$model" = default ] && env_cpu=
		PITH_QEMU_CPU=$env_cpu "$PITH" boot --image "$IMAGE" --state "$st" --user-data "$STATE/user-data" \
			--detach --quiet --wait-for login: >/dev/null
		pid=$(cat "$st/node1/qemu.pid")
		# pith boot returns once SSH answers, a little after the prompt.
		login=$(cpu "$pid")
		guest=$("$PITH" boot ssh --state "$st" node1 -- \
			'sudo sh -c "echo 3 >/proc/sys/vm/drop_caches"; s=$(date +%s%N); sudo sha256sum /dev/disk/by-partlabel/USR-A >/dev/null; echo $((($(date +%s%N) - s) / 1000000))')
		after=$(cpu "$pid")
		"$PITH" boot stop --state "$st" >/dev/null
		printf 'round %s  %-60s boot+ssh %6.2f s CPU   sha256sum USR-A %6.2f s CPU (%s ms in the guest)\n' \
			"$r" "$model" "$login" "$(echo "$after - $login" | bc)" "$guest"
	done
done
