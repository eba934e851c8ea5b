package ami

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/pith-os/pith/image/manifest"
)

// ec2Arches maps an image's architecture (the manifest's, Go's and Debian's
// name) to EC2's.
var ec2Arches = map[string]types.ArchitectureValues{
	"amd64": types.ArchitectureValuesX8664,
	"arm64": types.ArchitectureValuesArm64,
}

// EC2Arch is EC2's name of an image architecture: x86_64 for amd64, arm64
// for arm64; false for any other.
func EC2Arch(arch string) (string, bool) {
	a, ok := ec2Arches[arch]
	return string(a), ok
}

// DefaultBootMode is the boot mode an AMI of arch gets without --boot-mode:
// uefi-preferred on amd64 (the image boots both ways, so every instance
// type can start it), uefi on arm64 (Graviton boots UEFI only; the image
// has no BIOS boot code).
func DefaultBootMode(arch string) string {
	if arch == "arm64" {
		return "uefi"
	}
	return "uefi-preferred"
}

// ec2ArchOf is EC2's name of m's architecture, or the manifest's own name
// if EC2 has none (Upload refuses such a manifest before naming anything).
func ec2ArchOf(m *manifest.Manifest) string {
	if a, ok := EC2Arch(m.Architecture()); ok {
		return a
	}
	return m.Architecture()
}

// checkArch settles o.Arch: the manifest's architecture (an explicit Arch
// must agree with it), else Arch, else amd64 (images from before manifests
// named theirs). One EC2 has no AMIs for is refused.
func (o *Options) checkArch() error {
	from := "--arch"
	if m := o.Manifest; m != nil {
		if o.Arch != "" && o.Arch != m.Architecture() {
			return fmt.Errorf("--arch %s, but the manifest says %s is %s: leave --arch out, or pass this image's manifest with --manifest", o.Arch, o.Image, m.Architecture())
		}
		o.Arch, from = m.Architecture(), "the build manifest"
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if _, ok := EC2Arch(o.Arch); !ok {
		return fmt.Errorf("architecture %q (from %s): pith ami registers amd64 (x86_64) and arm64 AMIs only", o.Arch, from)
	}
	return nil
}
