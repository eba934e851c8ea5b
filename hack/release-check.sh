#!/usr/bin/env bash
# Keeps a channel current with Debian's fixes without a person (make
# release-check, run from a timer on the release machine): rebuild the image
# from the archives as they are now (the release, -updates, -security), check
# it with `pith outdated`, and publish it on CHANNEL only when its content
# (Debian packages, kernel, Go modules, Pith's binaries) differs from the
# channel's current release. Exit 0: released, or nothing changed.
#   REPO=DIR      release repository (pith release --repo)       required
#   KEY=FILE      private release signing key (pith keygen)      required
#   SB_KEYS=DIR   Secure Boot keys the channel's images are      needed when they are signed
#                 signed with (pith keygen --secure-boot)        (nodes refuse a release signed otherwise)
#   CHANNEL=NAME  channel to keep current                        default stable
#   BASE_VERSION  MAJOR.MINOR.PATCH the release versions extend  default 0.1.0
#   OUT, CACHE, BIN  build output, cache and pith binaries       default _out/release-check, ~/.cache/pith, _out/bin
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REPO:?set REPO to the release repository directory}"
: "${KEY:?set KEY to the private release signing key (pith keygen)}"
CHANNEL=${CHANNEL:-stable}
OUT=${OUT:-_out/release-check}
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pith}
BIN=${BIN:-_out/bin}
PITH=$BIN/pith
pub=${KEY%.key}.pub
[ -x "$PITH" ] || { echo "release-check: $PITH missing: run make bin" >&2; exit 1; }
[ -f "$pub" ] || { echo "release-check: $pub (the public half of KEY) missing" >&2; exit 1; }
# A fourth numeric part orders the automatic releases by build time.
version=${BASE_VERSION:-0.1.0}.$(date -u +%Y%m%d%H%M)

echo "release-check: building $version into $OUT"
sb=()
[ -n "${SB_KEYS:-}" ] && sb=(--secure-boot-keys "$SB_KEYS")
"$PITH" build --out "$OUT" --cache "$CACHE" --agent-bin-dir "$BIN" --release-key "$pub" --version "$version" "${sb[@]}"
# A fresh build is current unless the archive moved during the build: then
# release nothing now, the next run picks the fix up.
"$PITH" outdated --cache "$CACHE" "$OUT"

cur=""
if [ -f "$REPO/channels/$CHANNEL.json" ]; then
  cur=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$REPO/channels/$CHANNEL.json" | head -n1)
fi
if [ -n "$cur" ] && [ -f "$REPO/$cur/pith.spdx.json" ]; then
  if "$PITH" sbom diff --exit-code "$REPO/$cur" "$OUT"; then
    echo "release-check: $CHANNEL's $cur has the same content: nothing to release"
    exit 0
  fi
fi
"$PITH" release --require-current --cache "$CACHE" --channel "$CHANNEL" --image "$OUT" \
  --key "$KEY" --repo "$REPO" --version "$version"
echo "release-check: released $version on $CHANNEL"
