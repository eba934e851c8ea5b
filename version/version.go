// Package version holds the build's version string, set by the linker
// (-ldflags "-X github.com/pith-os/pith/version.Version=...").
package version

// Version is the Pith release this binary belongs to.
var Version = "0.1.0-dev"
