package apply

import (
	"golang.org/x/sys/unix"
)

// KernelHost sets the hostname with sethostname(2). systemd-hostnamed
// reads /etc/hostname, which the applier writes first.
type KernelHost struct{}

// SetHostname implements Host.
func (KernelHost) SetHostname(name string) error { return unix.Sethostname([]byte(name)) }
