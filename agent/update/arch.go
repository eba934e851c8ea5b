package update

import (
	"path"

	"github.com/pith-os/pith/channels"
)

// arch is the node's architecture (amd64, arm64), from its platform.
func (a *Agent) arch() string {
	if a.cfg.Platform == "" {
		return channels.RootArch
	}
	return path.Base(a.cfg.Platform)
}

// channelURL is where this node's architecture's channels are served: the
// server itself for amd64, SERVER/<arch>/ for the others (channels.ArchDir).
func (a *Agent) channelURL() string { return channels.ArchURL(a.cfg.Server, a.arch()) }
