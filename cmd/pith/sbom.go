package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/sbom"
)

func init() {
	rootCmd.AddCommand(sbomCmd(), outdatedCmd())
}

func sbomCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sbom",
		Short: "Compare the software bills of materials (pith.spdx.json) of images and releases",
	}
	var asJSON, exitCode bool
	diff := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Debian packages (and Go modules) added, removed and upgraded between two images or releases",
		Long: `OLD and NEW are pith.spdx.json files, or directories holding one: an image
directory from pith build, or a release directory REPO/<version>/ from pith
release. Upgrades whose new version came from Debian's security archive are
marked "security". With --exit-code, exits 1 when anything differs (Debian
packages, the kernel, Go modules or Pith's binaries), for scripts.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := diffSBOMs(args[0], args[1])
			if err != nil {
				return err
			}
			if asJSON {
				err = writeJSON(cmd.OutOrStdout(), d)
			} else {
				d.Write(cmd.OutOrStdout())
			}
			if err == nil && exitCode && !d.Empty() {
				err = errDiffers
			}
			return err
		},
	}
	diff.Flags().BoolVar(&asJSON, "json", false, "print the diff as JSON")
	diff.Flags().BoolVar(&exitCode, "exit-code", false, "exit 1 when the images differ")
	cmd.AddCommand(diff)
	return cmd
}

func diffSBOMs(oldPath, newPath string) (*sbom.Diff, error) {
	old, err := sbom.Read(oldPath)
	if err != nil {
		return nil, err
	}
	cur, err := sbom.Read(newPath)
	if err != nil {
		return nil, err
	}
	return sbom.Compare(old, cur), nil
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// errDiffers makes pith sbom diff --exit-code exit 1.
var errDiffers = errors.New("the images differ")

// errOutdated makes pith exit 1 after the list was printed.
var errOutdated = errors.New("the image is behind Debian's security archive: rebuild it (pith build)")

func outdatedCmd() *cobra.Command {
	var (
		cacheDir string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "outdated [IMAGE]",
		Short: "List the image's packages that Debian's security archive has newer versions of (exit 1 if any)",
		Long: `Reads IMAGE's pith.spdx.json (IMAGE: an image directory, default _out, a
release directory or the file itself), brings the apt indexes of the
archives the image was built from up to date (the builder's, under --cache),
and lists every package with a newer version in a -security archive, the
kernel included. Exits 1 when there is any, so a timer can rebuild.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			img := "_out"
			if len(args) == 1 {
				img = args[0]
			}
			cache, err := defaultCache(cacheDir)
			if err != nil {
				return err
			}
			ups, err := outdated(cmd.Context(), img, cache)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(w, ups); err != nil {
					return err
				}
			} else {
				printUpdates(w, ups)
			}
			if len(ups) > 0 {
				return errOutdated
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cacheDir, "cache", "", "pith build's cache `DIR` (default ~/.cache/pith)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

func printUpdates(w io.Writer, ups []sbom.Update) {
	if len(ups) == 0 {
		fmt.Fprintln(w, "up to date with the security archive")
		return
	}
	fmt.Fprintf(w, "%d packages have security updates:\n", len(ups))
	for _, u := range ups {
		line := fmt.Sprintf("  %s %s -> %s (%s)", u.Name, u.Installed, u.Available, u.Archive)
		if u.Package != "" {
			line += " as " + u.Package
		}
		if u.Boot != "" {
			line += ", in the " + u.Boot + " boot loader"
		}
		fmt.Fprintln(w, line)
	}
}

func defaultCache(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache directory (%v): pass --cache DIR", err)
	}
	return filepath.Join(d, "pith"), nil
}

// outdated compares the SBOM at img with the archives it was built from:
// those the manifest beside it names, else the default config's.
func outdated(ctx context.Context, img, cache string) ([]sbom.Update, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	inv, err := sbom.Read(img)
	if err != nil {
		return nil, err
	}
	// The release's archives with its -security suite, even for an image
	// pinned to the release alone: that is what it is behind.
	c := config.Default()
	if m, err := manifest.Read(filepath.Join(img, manifest.FileName)); err == nil {
		c.Suite, c.Mirror = m.Inputs.Suite, m.Inputs.Mirror
		if m.Inputs.SecurityMirror != "" {
			c.SecurityMirror = m.Inputs.SecurityMirror
		}
		c.Arch = m.Architecture() // an arm64 image is behind arm64's index
	}
	lists := apt.ListsFor(cache, c.Archives(), c.Arch)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lists.Lock(ctx) // a build may be refreshing them
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := lists.Fetch(ctx, cache); err != nil {
		return nil, fmt.Errorf("cannot bring the apt indexes up to date, so cannot tell whether the image is current: %w", err)
	}
	idx, err := lists.ReadIndex()
	if err != nil {
		return nil, err
	}
	return sbom.Outdated(inv, idx), nil
}
