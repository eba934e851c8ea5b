package apply

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
)

// checkKargsApplied rejects an Ignition config whose kernelArguments this
// boot's kernel line does not satisfy. The initramfs applies them on
// first boot (it writes the ESP's grub/kargs and reboots once), from
// QEMU's fw_cfg, a config drive, the OEM partition's config.ign and, on
// EC2, the metadata service: a config from a URL, or from EC2 when the
// service did not answer it, reaches only this stage, which cannot change
// the kernel line of the running boot. Applying the rest as if the arguments were in effect would not be
// what was asked (as Ignition, which fails the boot).
func checkKargsApplied(root, source string, ud *cloudconfig.UserData, rep *cloudconfig.Report) {
	if ud == nil || ud.Ignition == nil {
		return
	}
	k := ud.Ignition.KernelArguments
	if len(k.ShouldExist)+len(k.ShouldNotExist) == 0 {
		return
	}
	pos := cloudconfig.Pos{Line: 1, Column: 1}
	line, err := os.ReadFile(filepath.Join(root, "proc/cmdline"))
	if err != nil {
		rep.Errorf(pos, "kernelArguments", "kernelArguments: cannot read this boot's kernel line: %v", err)
		return
	}
	if unmet := cloudconfig.KargsUnmet(k, string(line)); len(unmet) > 0 {
		rep.Errorf(pos, "kernelArguments",
			"kernelArguments are not in effect (this boot's kernel line lacks %s): %s; a Secure Boot image takes none", strings.Join(unmet, " "), initramfsSources(source))
	}
}
