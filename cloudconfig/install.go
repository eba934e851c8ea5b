package cloudconfig

// PithInstall is `pith.install:`: on a live system (the ISO or PXE boot,
// pith.live on the kernel line), install the image to a disk unattended,
// then power off or reboot. Ignored on an installed machine.
type PithInstall struct {
	Device string `yaml:"device" valid:"abspath"` // the whole disk, e.g. /dev/vda
	Image  string `yaml:"image" valid:"url"`      // pith.img or pith.img.zst
	// Manifest defaults to pith.manifest.json beside the image.
	Manifest string `yaml:"manifest" valid:"url"`
	// UserData is the #cloud-config or Ignition config the installed
	// machine applies on its first boot (put into its OEM partition).
	UserData string `yaml:"user_data"`
	// PublicKeys (ed25519, base64) the image manifest must be signed by;
	// with any, an unsigned manifest is refused.
	PublicKeys []string `yaml:"public_keys" valid:"ed25519key"`
	Force      bool     `yaml:"force"` // overwrite a disk holding partitions
	// After is what the machine does once installed: poweroff (default),
	// reboot (into the installed disk, if it boots first) or none.
	After string `yaml:"after" valid:"installafter"`
}
