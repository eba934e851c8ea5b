// Command pith-init is /init in Pith's initramfs. It must be built static
// (CGO_ENABLED=0): the initramfs has no C library.
package main

import pithinit "github.com/pith-os/pith/initramfs/init"

func main() {
	pithinit.Main()
}
