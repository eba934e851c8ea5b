// Package live makes the live-boot artifacts of a built Pith image: a
// hybrid ISO (pith.iso: El Torito for BIOS and UEFI, and an MBR/GPT for a
// USB stick; signed for Secure Boot with the image's keys) and PXE artifacts (pith-pxe.vmlinuz, one
// pith-pxe.initrd, an example iPXE script for BIOS clients and
// pith-pxe.efi, a network GRUB for UEFI clients).
//
// Both boot the image's own kernel and initramfs with pith.live on the
// kernel line and the image's USR (squashfs plus its dm-verity tree) as a
// second cpio archive: the kernel unpacks it into RAM with the
// initramfs, and the init maps it through a read-only loop device and
// dm-verity (the same root hash as slot A on disk) before mounting /usr.
// ROOT is a tmpfs, so the live system needs no disk and every boot is a
// first boot: user-data comes from the usual datasources and from
// pith.config.url= on the kernel line.
package live
