package node

import (
	"strings"
	"testing"
)

func TestSecureBootKargAllowed(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want bool
	}{
		{"console=ttyS1,115200n8", true},
		{"console=hvc0", true},
		{"quiet", true},
		{"loglevel=7", true},
		{"mitigations=auto,nosmt", true},
		{"systemd.unified_cgroup_hierarchy=0", true},
		{"default_hugepagesz=1G", true},
		{"hugepagesz=2M", true},
		{"isolcpus=domain,managed_irq,2-3", true},
		{"transparent_hugepage=never", true},
		// Whole words only, and nothing that turns a protection off.
		{"quiet2", false},
		{"xquiet", false},
		{"loglevel=8", false},
		{"mitigations=off", false},
		{"init=/bin/sh", false},
		{"rdinit=/bin/sh", false},
		{"pith.usrhash=" + strings.Repeat("0", 64), false},
		{"pith.verity=off", false},
		{"module.sig_enforce=0", false},
		{"lockdown=none", false},
		{"systemd.unit=rescue.target", false},
		{"systemd.debug_shell", false},
		{"console=ttyS0\"", false},
		{"console=ttyS0 init=/bin/sh", false},
		{"console=ttyS0\ninit=/bin/sh", false},
		{"--", false},
		{"netXifnames=0", false},
		{"", false},
	} {
		if got := SecureBootKargAllowed(tc.arg); got != tc.want {
			t.Errorf("SecureBootKargAllowed(%q) = %v, want %v", tc.arg, got, tc.want)
		}
	}
	// grub.cfg has the pattern in single quotes, which keep every
	// character but ' as it is.
	if strings.Contains(SecureBootKargs, "'") {
		t.Errorf("SecureBootKargs %q has a ', which would end grub.cfg's quotes", SecureBootKargs)
	}
}
