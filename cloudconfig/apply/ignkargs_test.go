package apply

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
)

func TestCheckKargsApplied(t *testing.T) {
	const line = "console=tty0 panic=10 pith.slot=a quiet e2e_karg=1\n"
	for _, tc := range []struct {
		name, kargs, cmdline string // cmdline "" = no /proc/cmdline
		err                  string
	}{
		{"none asked, no kernel line", `{}`, "", ""},
		{"in effect", `{"shouldExist":["e2e_karg=1"],"shouldNotExist":["nosmt"]}`, line, ""},
		{"missing", `{"shouldExist":["e2e_karg=1","nosmt"]}`, line, "this boot's kernel line lacks +nosmt): the initramfs applies them on first boot from ignition.config.url on the kernel line, else QEMU fw_cfg user-data, a config drive, the OEM partition's config.ign (pith install) or, with pith.platform=ec2 on the kernel line, EC2's metadata service, and this config came from ec2, which the initramfs did not reach (no DHCP lease or no answer within its wait: see the boot's console) or did not try"},
		{"present", `{"shouldNotExist":["quiet"]}`, line, "lacks -quiet)"},
		{"no kernel line", `{"shouldExist":["a"]}`, "", "cannot read this boot's kernel line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.cmdline != "" {
				os.MkdirAll(filepath.Join(root, "proc"), 0o755)
				if err := os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte(tc.cmdline), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ud, rep := cloudconfig.Parse([]byte(`{"ignition":{"version":"3.4.0"},"kernelArguments":` + tc.kargs + `}`))
			if rep.HasErrors() {
				t.Fatalf("config invalid: %s", rep.Format("x"))
			}
			checkKargsApplied(root, "ec2", ud, rep)
			got := rep.Format("x")
			if tc.err == "" && rep.HasErrors() || tc.err != "" && !strings.Contains(got, tc.err) {
				t.Fatalf("report:\n%s\nwant %q", got, tc.err)
			}
		})
	}
}
