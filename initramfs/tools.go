//go:build tools

package initramfs

// The busybox is compiled from u-root's own module at the version go.mod
// names (Busybox, urootFallbackVersion, TestUrootVersionMatchesGoMod).
// Nothing in Pith imports u-root, so this file keeps that requirement in
// go.mod through go mod tidy; the tools tag keeps it out of every build.
import _ "github.com/u-root/u-root/pkg/ulog"
