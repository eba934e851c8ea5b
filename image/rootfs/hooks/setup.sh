#!/bin/sh
# mmdebstrap setup hook ($1 = the empty rootfs): seeds apt's archive and list
# directories from Pith's cache, so packages an earlier build downloaded are
# not downloaded again, and apt installs from the lists Pith fetched and
# keyed the tree by (mmdebstrap runs with --skip=update).
set -eu
root=$1
mkdir -p "$root/var/cache/apt/archives/partial" "$root/var/lib/apt/lists/partial"
seed() { # seed FROM TO: hard-link (or copy, across filesystems) the files
	[ -d "$1" ] || return 0
	for f in "$1"/*; do
		[ -f "$f" ] || continue
		ln -f "$f" "$2/" 2>/dev/null || cp -f "$f" "$2/"
	done
}
seed "$PITH_ARCHIVES" "$root/var/cache/apt/archives"
seed "$PITH_LISTS" "$root/var/lib/apt/lists"
