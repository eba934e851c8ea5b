package channels

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// Architectures in one repository. amd64, the first architecture, keeps
// the repository root (REPO/<version>/, REPO/channels/<name>.json): nodes
// and channel URLs from before arm64 keep working unchanged. Every other
// architecture is a repository of the same layout in REPO/<arch>/, served
// at SERVER/<arch>/, so the same channel name carries one release per
// architecture, each signed for its own platform:
//
//	REPO/channels/stable.json        amd64 (linux/amd64)
//	REPO/0.2.0/usr, vmlinuz, ...
//	REPO/arm64/channels/stable.json  arm64 (linux/arm64)
//	REPO/arm64/0.2.0/usr, vmlinuz, ...
//
// Version directories must parse as versions, so an architecture name can
// never collide with one.
const RootArch = "amd64"

// knownArches are the architectures a repository may hold.
var knownArches = []string{"amd64", "arm64"}

// PlatformArch returns the architecture of a GOOS/GOARCH platform.
func PlatformArch(platform string) (string, error) {
	goos, arch, ok := strings.Cut(platform, "/")
	if !ok || goos != "linux" {
		return "", fmt.Errorf("platform %q: want linux/ARCH, e.g. linux/amd64", platform)
	}
	for _, a := range knownArches {
		if a == arch {
			return arch, nil
		}
	}
	return "", fmt.Errorf("platform %q: architecture %q is not one of %s", platform, arch, strings.Join(knownArches, ", "))
}

// ArchDir is the repository directory holding arch's releases.
func ArchDir(repo, arch string) string {
	if arch == RootArch || arch == "" {
		return repo
	}
	return filepath.Join(repo, arch)
}

// ArchURL is the server URL a node of arch fetches its channel from.
func ArchURL(server, arch string) string {
	if arch == RootArch || arch == "" {
		return server
	}
	return strings.TrimSuffix(server, "/") + "/" + path.Clean(arch) + "/"
}
