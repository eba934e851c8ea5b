package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/build"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/live"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/rootfs"
	"github.com/pith-os/pith/image/sbom"
	"github.com/pith-os/pith/version"
)

func init() {
	var imageDir, outDir, formats, cacheDir string
	cmd := &cobra.Command{
		Use:   "live",
		Short: "Make the live ISO and PXE artifacts of a built image (pith.iso, pith-pxe.*)",
		Long: `Make a live Pith from a built image (pith build's pith.img and manifest):

  pith.iso          hybrid ISO: BIOS and UEFI, from CD or a USB stick (dd it)
  pith-pxe.vmlinuz  kernel, pith-pxe.initrd (initramfs + USR), and DHCP's
                    boot file: pith-pxe.ipxe (iPXE, BIOS clients) or
                    pith-pxe.efi (the image's UEFI GRUB, for UEFI clients;
                    no Secure Boot)
  pith-live.spdx.json  their SBOM: the image's, with their boot loaders

The live system runs from RAM with its /usr verified by dm-verity against
the image's root hash, takes user-data from the usual datasources and from
pith.config.url= on the kernel line, and can install the image to a disk
(pith install, or unattended from its user-data's pith.install section).
pith build --formats iso,pxe makes the same files.`,
		Example: `  pith live --image-dir _out --out _out/live
  pith live --image-dir _out --out _out/live --formats pxe`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := manifest.Read(filepath.Join(imageDir, manifest.FileName))
			if err != nil {
				return fmt.Errorf("%v: run pith build first (or pass --image-dir)", err)
			}
			work, err := build.PrepareOut(outDir)
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			if cacheDir == "" {
				if cacheDir, err = defaultCacheDir(); err != nil {
					return err
				}
			}
			fs := strings.Split(formats, ",")
			arts, err := makeLive(cmd.Context(), imageDir, cacheDir, m, fs, work, m.Inputs.SourceDateEpoch, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			infos, err := build.Publish(outDir, arts, "")
			if err != nil {
				return err
			}
			for _, a := range infos {
				fmt.Fprintf(cmd.OutOrStdout(), "  %-20s %s\n", a.Name, layout.Human(a.Size))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&imageDir, "image-dir", "_out", "`DIR` holding pith.img and pith.manifest.json")
	f.StringVar(&outDir, "out", "_out/live", "output `DIR`")
	f.StringVar(&formats, "formats", "iso,pxe", "comma-separated: iso, pxe")
	f.StringVar(&cacheDir, "cache", "", "pith build's cache `DIR`, where pith-pxe.efi's GRUB (the image's UEFI GRUB) is unpacked (default: the user cache dir's pith/, e.g. ~/.cache/pith)")
	rootCmd.AddCommand(cmd)
}

// defaultCacheDir is pith build's and pith live's default --cache.
func defaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache directory (%v): pass --cache DIR", err)
	}
	return filepath.Join(d, "pith"), nil
}

// makeLive makes the live formats of the image in imageDir (m its
// manifest) into work and returns its artifacts, their SBOM included.
// pith-pxe.efi is made with the image's own UEFI GRUB, from cache
// (rootfs.LiveEFIGrub), when the image's SBOM names one.
func makeLive(ctx context.Context, imageDir, cache string, m *manifest.Manifest, formats []string, work string, epoch int64, warn io.Writer) (map[string]string, error) {
	inv, err := imageSBOM(imageDir, slices.Contains(formats, "pxe"), warn)
	if err != nil {
		return nil, err
	}
	var g bootloader.Grub
	var pxeGrub []sbom.Deb
	if inv != nil && slices.Contains(formats, "pxe") {
		logf := func(format string, args ...any) { fmt.Fprintf(warn, format+"\n", args...) }
		if g, pxeGrub, err = rootfs.LiveEFIGrub(ctx, cache, inv.BootLoaders, logf); err != nil {
			return nil, fmt.Errorf("pith-pxe.efi's GRUB: %w", err)
		}
	}
	arts, err := live.Build(ctx, filepath.Join(imageDir, "pith.img"), m, g, formats, work, epoch)
	if err != nil {
		return nil, err
	}
	if inv == nil {
		return arts, nil
	}
	return arts, addLiveSBOM(ctx, arts, inv, formats, pxeGrub, work, epoch)
}

// imageSBOM reads the image's SBOM; an image built before SBOMs has none
// (nil, said on warn): its live artifacts go out without one, and
// pith-pxe.efi (if pxe) is made with the build host's GRUB.
func imageSBOM(imageDir string, pxe bool, warn io.Writer) (*sbom.Inventory, error) {
	src := filepath.Join(imageDir, sbom.FileName)
	if _, err := os.Stat(src); os.IsNotExist(err) {
		host := ""
		if pxe {
			host = ", and " + live.PXEEFIName + " is the build host's GRUB"
		}
		fmt.Fprintf(warn, "pith live: %s has no %s (built before SBOMs): %s not written%s\n", imageDir, sbom.FileName, live.SBOMName, host)
		return nil, nil
	}
	inv, err := sbom.Read(src)
	if err != nil {
		return nil, fmt.Errorf("the image's SBOM: %w", err)
	}
	return inv, nil
}

// buildLive makes the iso and pxe formats of pith build from the
// published pith.img, and returns the build's artifacts with them.
func buildLive(ctx context.Context, c config.Config, outDir, cacheDir string, res *build.Result) ([]build.ArtifactInfo, error) {
	var want []string
	for _, f := range c.Formats {
		if slices.Contains(live.Formats, f) {
			want = append(want, f)
		}
	}
	if len(want) == 0 {
		return res.Artifacts, nil
	}
	start := time.Now()
	work, err := build.PrepareOut(outDir)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	arts, err := makeLive(ctx, outDir, cacheDir, res.Manifest, want, work, c.Epoch, os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("live %v: %v (pith.img and its manifest are built)", want, err)
	}
	infos, err := build.Publish(outDir, arts, "")
	if err != nil {
		return nil, err
	}
	res.Steps = append(res.Steps, build.Step{Name: "live " + strings.Join(want, ", "), Duration: time.Since(start)})
	return append(res.Artifacts, infos...), nil
}

// addLiveSBOM writes the live artifacts' SBOM into work and adds it to
// arts: the image's inventory inv (the live system runs its kernel,
// initramfs and USR) with the boot loaders of formats in place of the
// disk's, pith-pxe.efi's pxeGrub (nil: the host's).
func addLiveSBOM(ctx context.Context, arts map[string]string, inv *sbom.Inventory, formats []string, pxeGrub []sbom.Deb, work string, epoch int64) error {
	var err error
	inv.Name, inv.Media = "pith-live", sbom.MediaLive
	if inv.BootLoaders, err = rootfs.LiveBootLoaders(ctx, slices.Contains(formats, "iso"), slices.Contains(formats, "pxe"), pxeGrub); err != nil {
		return err
	}
	b, err := inv.Document(time.Unix(epoch, 0), "pith-"+version.Version).Marshal()
	if err != nil {
		return err
	}
	p := filepath.Join(work, live.SBOMName)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return err
	}
	arts[live.SBOMName] = p
	return nil
}
