#!/usr/bin/env bash
# Benchmark of `pith build` (not a test): a cold-cache build (fresh, empty
# cache dir: downloads everything, runs mmdebstrap), then a warm-cache build
# with that same cache, and the artifacts' sizes. Targets on a 2-core
# machine: warm build < 60 s, pith.qcow2 < 300 MB.
#   BENCH_COLD=0   skip the cold build and time a warm build on the normal cache
#   KEEP=1         keep the temporary directory
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-_out/bin}
PITH=$BIN/pith
[ -x "$PITH" ] || { echo "bench-build: $PITH missing: run make bin" >&2; exit 1; }
tmp=$(mktemp -d /var/tmp/pith-bench.XXXXXX)
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$tmp"' EXIT; fi

build() { # build NAME CACHE
  local start end
  start=$(date +%s.%N)
  if ! "$PITH" build --out "$tmp/$1" --cache "$2" --agent-bin-dir "$BIN" >"$tmp/$1.log" 2>&1; then
    echo "bench-build: $1 build failed; last lines of its log:" >&2
    tail -n 20 "$tmp/$1.log" >&2
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
if [ "$cold" != skipped ]; then
  if cmp -s "$tmp/cold/pith.img" "$img"; then same=yes; else same=NO; fi
  printf '  %-28s %s\n' "cold == warm pith.img" "$same"
fi
echo
echo "warm build's step times:"
sed -n '/^Time per step:/,$p' "$tmp/warm.log"
