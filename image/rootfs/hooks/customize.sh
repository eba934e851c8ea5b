#!/bin/sh
# mmdebstrap customize hook ($1 = the installed rootfs): adds the kernel from
# its .deb (extracted, not installed: no initramfs-tools, no postinst) and
# saves the .debs apt downloaded into Pith's cache (Pith fetches the lists
# itself). Lines starting "pith-error:" are read by the Go side. Pith's own files are added later, in Go, so
# changing them does not rebuild the Debian tree.
set -eu
root=$1
archives=$root/var/cache/apt/archives
fail() {
	echo "pith-error: $*" >&2
	exit 1
}
aptc() { APT_CONFIG=$MMDEBSTRAP_APT_CONFIG "$@"; }

# The kernel: follow a metapackage's Depends (linux-image-cloud-amd64 ->
# linux-image-6.1.0-N-cloud-amd64) to the package holding /boot/vmlinuz-*.
pkg=$PITH_KERNEL
deb=
found=
for hop in 1 2 3 4; do
	info=$(aptc apt-cache show --no-all-versions "$pkg" 2>/dev/null) || fail "kernel package $pkg not found"
	ver=$(printf '%s\n' "$info" | sed -n 's/^Version: //p' | head -n1)
	arch=$(printf '%s\n' "$info" | sed -n 's/^Architecture: //p' | head -n1)
	[ -n "$ver" ] || fail "kernel package $pkg not found"
	deb=$archives/${pkg}_$(printf %s "$ver" | sed 's/:/%3a/g')_$arch.deb
	if [ ! -s "$deb" ]; then
		(cd "$archives" && aptc apt-get download -q "$pkg") || fail "cannot download kernel package $pkg"
	fi
	if dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -q '^\./boot/vmlinuz-'; then
		found=1
		break
	fi
	next=$(dpkg-deb -f "$deb" Depends | tr ',|' '\n\n' | sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -n1)
	[ -n "$next" ] || fail "kernel package $PITH_KERNEL neither contains nor depends on a linux-image package"
	pkg=$next
done
[ -n "$found" ] || fail "kernel package $PITH_KERNEL: no /boot/vmlinuz-* after 4 dependency hops"

kx=$PITH_WORK/kernel-extract
rm -rf "$kx"
mkdir -p "$kx" "$root/boot" "$root/usr/lib/modules"
dpkg-deb -x "$deb" "$kx"
kver=
for v in "$kx"/boot/vmlinuz-*; do kver=${v##*/vmlinuz-}; done
cp -a "$kx/boot/." "$root/boot/"
# bookworm's kernel ships /lib/modules, trixie's /usr/lib/modules.
for d in "$kx/lib/modules" "$kx/usr/lib/modules"; do
	if [ -d "$d" ]; then cp -a "$d/." "$root/usr/lib/modules/"; fi
done
if [ -d "$kx/usr/share/doc" ]; then cp -a "$kx/usr/share/doc/." "$root/usr/share/doc/"; fi
rm -rf "$kx"
[ -d "$root/usr/lib/modules/$kver" ] || fail "kernel package $pkg has no modules for $kver"
chroot "$root" depmod -a "$kver"
echo "$kver" >"$PITH_WORK/kernel-version"
# The kernel is not in dpkg's database: record which .deb it came from.
echo "$pkg $ver $arch" >"$root/boot/pith-kernel-package"

# mdadm's postinst wrote mdadm.conf with an ARRAY line for each array it
# found on the build machine (mkconf scans /proc/partitions): a node's
# arrays are its own, which pith-init adds for Ignition's storage.raid.
if [ -f "$root/etc/mdadm/mdadm.conf" ]; then
	sed -i '/^ARRAY /d' "$root/etc/mdadm/mdadm.conf"
fi

# Save downloads into the cache: hard links (or copies) under a temporary
# name, renamed into place, so the cache never holds half a file.
save() { # save FROM TO: new or changed regular files
	mkdir -p "$2"
	for f in "$1"/*; do
		[ -f "$f" ] || continue
		b=${f##*/}
		[ "$b" = lock ] && continue
		if [ "$f" -ef "$2/$b" ]; then continue; fi
		if [ -e "$2/$b" ] && [ "$3" = keep ]; then continue; fi
		ln -f "$f" "$2/.$b.tmp" 2>/dev/null || cp -f "$f" "$2/.$b.tmp"
		mv -f "$2/.$b.tmp" "$2/$b"
	done
}
save "$archives" "$PITH_ARCHIVES" keep
