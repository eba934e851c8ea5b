package node

import (
	"regexp"
	"strings"
)

// The machine's own kernel arguments on a Secure Boot image. Its signed
// grub.cfg reads KargsFile like a plain image's, but the file is not
// signed (pith-init writes it on the machine), so anyone who can write
// the ESP could put init=, a second pith.usrhash= or module.sig_enforce=0
// there and boot what the signatures were to stop. So that grub.cfg takes
// the file only when every argument in it matches SecureBootKargs whole,
// and pith-init refuses a config asking for any other before it writes
// the file.
//
// The list holds what operators set with kernelArguments on container
// hosts (consoles, cgroup and hugepage settings, CPU isolation, interface
// names) with values narrow enough that none turns a protection off.
// Each pattern is in the common subset of Go's RE2 and the POSIX extended
// expressions of GRUB's regexp command, so the Go check and GRUB's agree
// (image/bootloader's TestGrubKargs runs both); no ', ", space or GRUB
// script character may appear in a value it allows.
var secureBootKargs = []string{
	`console=[A-Za-z0-9]+(,[A-Za-z0-9]+)?`,
	`quiet`,
	`loglevel=[0-7]`,
	`nomodeset`,
	`nosmt`,
	`mitigations=auto(,nosmt)?`,
	`net\.ifnames=[01]`,
	`biosdevname=[01]`,
	`ipv6\.disable=[01]`,
	`systemd\.unified_cgroup_hierarchy=[01]`,
	`cgroup_enable=memory`,
	`swapaccount=1`,
	`hugepages=[0-9]+`,
	`(default_)?hugepagesz=[0-9]+[KMG]?`,
	`transparent_hugepage=(always|madvise|never)`,
	`(isolcpus|nohz_full|rcu_nocbs)=[a-z0-9,_-]+`,
}

// SecureBootKargs is the anchored pattern a Secure Boot image's machine
// argument must match whole.
var SecureBootKargs = "^(" + strings.Join(secureBootKargs, "|") + ")$"

var secureBootKargsRe = regexp.MustCompile(SecureBootKargs)

// SecureBootKargAllowed reports whether a Secure Boot image's grub.cfg
// takes arg from the machine's arguments file.
func SecureBootKargAllowed(arg string) bool { return secureBootKargsRe.MatchString(arg) }
