package channels

// Payloads of a release whose image signs its UEFI boot chain (pith build
// --secure-boot-keys): GRUB's detached signatures of the kernel, the
// initrd and the slot's verity cfg (bootloader.VerityCfg of the release's
// root hash, which names no slot). Nodes whose ESP holds the boot chain's
// public key require them and check them before writing anything.
const (
	PayloadKernelSig = "kernel-sig" // ESP pith/vmlinuz-{a,b}.sig
	PayloadInitrdSig = "initrd-sig" // ESP pith/initrd-{a,b}.sig
	PayloadVeritySig = "verity-sig" // ESP pith/verity-{a,b}.cfg.sig
)

// BootSigPayloads are the three, in the order they are published.
var BootSigPayloads = []string{PayloadKernelSig, PayloadInitrdSig, PayloadVeritySig}
