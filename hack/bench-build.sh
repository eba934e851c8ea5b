#!/usr/bin/env bash
# Benchmark of `pith build` (not a test): a cold-cache build (fresh, empty
# cache dir: downloads everything, runs mmdebstrap), then a warm-cache build
# with that same cache, and the artifacts' sizes. Targets on a 2-core
# machine: warm build < 60 s, pith.qcow2 < 300 MB.
#   BENCH_COLD=0   skip the cold build and time a warm build on the normal cache
#   BENCH_PINNED=1 also time warm builds pinned to the release alone
#                  (debian.suites: [bookworm], no -updates/-security), the
#                  builds before issue 22: the cost of the two extra archives
#   BENCH_ROUNDS=N with BENCH_PINNED: N rounds of one build of each kind,
#                  interleaved; medians (default 3: single builds on a shared
#                  machine vary more than the archives cost)
#   KEEP=1         keep the temporary directory
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-_out/bin}
PITH=$BIN/pith
[ -x "$PITH" ] || { echo "bench-build: $PITH missing: run make bin" >&2; exit 1; }
tmp=$(mktemp -d /var/tmp/pith-bench.XXXXXX)
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$tmp"' EXIT; fi

build() { # build NAME CACHE [pith build flags]
  local start end name=$1 cache=$2
  shift 2
  start=$(date +%s.%N)
  if ! "$PITH" build --out "$tmp/$name" --cache "$cache" --agent-bin-dir "$BIN" "$@" >"$tmp/$name.log" 2>&1; then
    echo "bench-build: $name build failed; last lines of its log:" >&2
    tail -n 20 "$tmp/$name.log" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }'
}

mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1048576 }'; }

if [ "${BENCH_COLD:-1}" = 1 ]; then
  cache=$tmp/cache
  echo "bench-build: cold build (empty cache $cache)..."
  cold=$(build cold "$cache")
  echo "bench-build: warm build (same cache)..."
else
  cache=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pith}
  cold=skipped
  echo "bench-build: warm build (cache $cache)..."
fi
warm=$(build warm "$cache")
# rootfs_step LOG: the build's own time for the root filesystem step (apt
# indexes, Debian tree), the step the archives change.
rootfs_step() { sed -n 's/^  root filesystem ([^)]*) *\([0-9.]*\)\(m\{0,1\}s\)$/\1 \2/p' "$1" | awk '{ print ($2 == "ms") ? $1 / 1000 : $1 }'; }
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
if [ "${BENCH_PINNED:-0}" = 1 ]; then
  rounds=${BENCH_ROUNDS:-3}
  printf 'debian:\n  suites: [bookworm]\n' >"$tmp/pinned.yaml"
  echo "bench-build: build pinned to bookworm alone (its own Debian tree, once)..."
  build pinned-first "$cache" --config "$tmp/pinned.yaml" >/dev/null
  three="" pinned="" three_fs="" pinned_fs=""
  # Alternating which goes first cancels a drift in the machine's load.
  for i in $(seq "$rounds"); do
    echo "bench-build: round $i of $rounds: a warm build with the three archives and one pinned to bookworm alone..."
    for kind in $(if [ $((i % 2)) = 1 ]; then echo three pinned; else echo pinned three; fi); do
      if [ "$kind" = three ]; then
        three="$three $(build "three$i" "$cache")"
        three_fs="$three_fs $(rootfs_step "$tmp/three$i.log")"
      else
        pinned="$pinned $(build "pinned$i" "$cache" --config "$tmp/pinned.yaml")"
        pinned_fs="$pinned_fs $(rootfs_step "$tmp/pinned$i.log")"
      fi
    done
  done
fi

img=$tmp/warm/pith.img
q=$tmp/warm/pith.qcow2
apparent=$(stat -c %s "$img")
alloc=$(( $(stat -c %b "$img") * $(stat -c %B "$img") ))
qsize=$(stat -c %s "$q")
echo
echo "pith build benchmark ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ))"
if [ "$cold" = skipped ]; then coldtxt=skipped; else coldtxt="$cold s"; fi
printf '  %-28s %s\n' "cold-cache build" "$coldtxt"
printf '  %-28s %s\n' "warm-cache build" "$warm s (target < 60 s)"
printf '  %-28s %s\n' "pith.img apparent size" "$(mib "$apparent")"
printf '  %-28s %s\n' "pith.img allocated" "$(mib "$alloc")"
printf '  %-28s %s\n' "pith.qcow2" "$(mib "$qsize") (target < 300 MB = $(mib 300000000))"
if [ "${BENCH_PINNED:-0}" = 1 ]; then
  m3=$(echo "$three" | median) mp=$(echo "$pinned" | median)
  f3=$(echo "$three_fs" | median) fp=$(echo "$pinned_fs" | median)
  printf '  %-28s %s\n' "warm, 3 archives ($rounds)" "median $m3 s (each:$three)"
  printf '  %-28s %s\n' "warm, release alone ($rounds)" "median $mp s (each:$pinned)"
  awk -v a="$m3" -v p="$mp" 'BEGIN { printf "  %-28s %+.1f%% (target within 10%%)\n", "3 archives vs release alone", 100 * (a - p) / p }'
  printf '  %-28s %s\n' "root filesystem step" "median $f3 s with 3 archives, $fp s alone (each:$three_fs /$pinned_fs)"
fi
if [ "$cold" != skipped ]; then
  if cmp -s "$tmp/cold/pith.img" "$img"; then same=yes; else same=NO; fi
  printf '  %-28s %s\n' "cold == warm pith.img" "$same"
fi
echo
echo "warm build's step times:"
sed -n '/^Time per step:/,$p' "$tmp/warm.log"
