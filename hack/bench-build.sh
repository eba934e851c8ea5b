#!/usr/bin/env bash
# Benchmark of `pith build` (not a test): a cold-cache build (fresh, empty
# cache dir: downloads everything, runs mmdebstrap), then a warm-cache build
# with that same cache, and the artifacts' sizes. Targets on a 2-core
# machine: warm build < 60 s, pith.qcow2 < 300 MB.
#   BENCH_COLD=0   skip the cold build and time a warm build on the normal cache
#   BENCH_PINNED=1 also time a warm build pinned to the release alone
#                  (debian.suites: [bookworm], no -updates/-security), the
#                  builds before issue 22: the cost of the two extra archives
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
if [ "${BENCH_PINNED:-0}" = 1 ]; then
  printf 'debian:\n  suites: [bookworm]\n' >"$tmp/pinned.yaml"
  echo "bench-build: build pinned to bookworm alone (its own Debian tree, once)..."
  build pinned-first "$cache" --config "$tmp/pinned.yaml" >/dev/null
  echo "bench-build: warm build pinned to bookworm alone..."
  pinned=$(build pinned "$cache" --config "$tmp/pinned.yaml")
  echo "bench-build: warm build with the three archives again..."
  warm2=$(build warm2 "$cache")
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
  printf '  %-28s %s\n' "warm, release alone" "$pinned s"
  printf '  %-28s %s\n' "warm, 3 archives (again)" "$warm2 s"
  awk -v a="$warm" -v b="$warm2" -v p="$pinned" 'BEGIN { m = (a + b) / 2; printf "  %-28s %+.1f%% (target within 10%%)\n", "3 archives vs release alone", 100 * (m - p) / p }'
fi
if [ "$cold" != skipped ]; then
  if cmp -s "$tmp/cold/pith.img" "$img"; then same=yes; else same=NO; fi
  printf '  %-28s %s\n' "cold == warm pith.img" "$same"
fi
echo
echo "warm build's step times:"
sed -n '/^Time per step:/,$p' "$tmp/warm.log"
