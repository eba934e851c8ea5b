package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/sbom"
)

// DiffFileName is the release directory's diff against the channel's
// previous release.
const DiffFileName = "sbom-diff.json"

// releaseSBOM reads the image's SBOM and compares it with the SBOM of the
// release the channel has now: the SBOM and the diff become files of the
// release, the security upgrades part of its signed manifest. An image
// built before SBOMs existed releases without them.
func releaseSBOM(imageDir, repo, channel string, logf func(string, ...any)) (map[string][]byte, []string, error) {
	b, err := os.ReadFile(filepath.Join(imageDir, sbom.FileName))
	if errors.Is(err, os.ErrNotExist) {
		logf("warning: %s has no %s (built by an older pith): the release carries no SBOM", imageDir, sbom.FileName)
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	files := map[string][]byte{sbom.FileName: b}
	cur, err := sbom.Read(filepath.Join(imageDir, sbom.FileName))
	if err != nil {
		return nil, nil, err
	}
	prev, err := channels.ChannelManifest(repo, channel)
	if errors.Is(err, os.ErrNotExist) {
		logf("first release on channel %s: no SBOM diff", channel)
		return files, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	old, err := sbom.Read(filepath.Join(repo, prev.Version, sbom.FileName))
	if err != nil {
		logf("warning: previous release %s has no readable SBOM (%v): no diff", prev.Version, err)
		return files, nil, nil
	}
	d := sbom.Compare(old, cur)
	d.From, d.To = prev.Version, cur.Version
	if files[DiffFileName], err = json.MarshalIndent(d, "", "  "); err != nil {
		return nil, nil, err
	}
	var security []string
	for _, c := range d.Security() {
		security = append(security, c.String())
	}
	logf("changes since %s: %d upgraded (%d security), %d added, %d removed (pith sbom diff %s %s)",
		prev.Version, len(d.Upgraded), len(security), len(d.Added), len(d.Removed), filepath.Join(repo, prev.Version), imageDir)
	return files, security, nil
}

// checkCurrent compares the image with Debian's security archive before a
// release: a warning, or with requireCurrent a refusal, when it is behind.
func checkCurrent(ctx context.Context, imageDir, cache string, requireCurrent bool, logf func(string, ...any)) error {
	if _, err := os.Stat(filepath.Join(imageDir, sbom.FileName)); err != nil && !requireCurrent {
		return nil // no SBOM: releaseSBOM says so
	}
	ups, err := outdated(ctx, imageDir, cache)
	if err != nil {
		if requireCurrent {
			return fmt.Errorf("--require-current: %w", err)
		}
		logf("warning: %v", err)
		return nil
	}
	if len(ups) == 0 {
		logf("image is current with Debian's security archive")
		return nil
	}
	for _, u := range ups {
		logf("behind the security archive: %s %s -> %s (%s)", u.Name, u.Installed, u.Available, u.Archive)
	}
	if requireCurrent {
		return fmt.Errorf("--require-current: the image is behind Debian's security archive in %d packages: rebuild it (pith build) and release that", len(ups))
	}
	logf("warning: releasing an image %d packages behind the security archive (--require-current refuses)", len(ups))
	return nil
}
