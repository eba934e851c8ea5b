package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/image/build"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/live"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/rootfs"
	"github.com/pith-os/pith/image/sbom"
	"github.com/pith-os/pith/image/secureboot"
	"github.com/pith-os/pith/version"
)

func init() {
	var imageDir, outDir, formats, cacheDir, secureBootKeys string
	cmd := &cobra.Command{
		Use:   "live",
		Short: "Make the live ISO and PXE artifacts of a built image (pith.iso, pith-pxe.*)",
		Long: `Make a live Pith from a built image (pith build's pith.img and manifest):

  pith.iso          hybrid ISO: BIOS and UEFI, from CD or a USB stick (dd it)
  pith-pxe.vmlinuz  kernel, pith-pxe.initrd (initramfs + USR), and DHCP's
                    boot file: pith-pxe.ipxe (iPXE, BIOS clients) or
                    pith-pxe.efi (the image's UEFI GRUB, for UEFI clients)
  pith-live.spdx.json  their SBOM: the image's, with their boot loaders

With --secure-boot-keys (the keys the image is signed with), the UEFI paths
are signed for Secure Boot as the image's is: pith.iso's GRUB and
pith-pxe.efi with db, and grub.cfg, the kernel and the initrds with GRUB's
key (pith-pxe.vmlinuz.sig and pith-pxe.initrd.sig go beside the PXE files),
which they enforce. 'pith live sign' signs a site's pith-pxe.cfg.

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
			var keys *secureboot.Keys
			if secureBootKeys != "" {
				if keys, err = secureboot.Load(secureBootKeys); err != nil {
					return err
				}
			}
			fs := strings.Split(formats, ",")
			arts, err := makeLive(cmd.Context(), imageDir, cacheDir, m, keys, fs, work, m.Inputs.SourceDateEpoch, cmd.ErrOrStderr())
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
	f.StringVar(&secureBootKeys, "secure-boot-keys", "", "sign the live media's UEFI paths (pith.iso, pith-pxe.efi) for Secure Boot with the keys in `DIR` (pith keygen --secure-boot), those the image is signed with")
	f.StringVar(&cacheDir, "cache", "", "pith build's cache `DIR`, where pith-pxe.efi's GRUB (the image's UEFI GRUB) is unpacked (default: the user cache dir's pith/, e.g. ~/.cache/pith)")
	cmd.AddCommand(liveSignCmd())
	rootCmd.AddCommand(cmd)
}

// liveSignCmd is pith live sign: the signature a Secure Boot
// pith-pxe.efi needs to read a site's pith-pxe.cfg.
func liveSignCmd() *cobra.Command {
	var keysDir string
	cmd := &cobra.Command{
		Use:   "sign --secure-boot-keys DIR FILE...",
		Short: "Sign files a Secure Boot pith-pxe.efi reads (pith-pxe.cfg) with GRUB's key",
		Long: `Writes FILE.sig beside each FILE: a detached signature by the GRUB key in
--secure-boot-keys (pith keygen --secure-boot), the form GRUB checks under
check_signatures=enforce. A pith-pxe.efi signed for Secure Boot reads its
pith-pxe.cfg only with a good pith-pxe.cfg.sig beside it; sign the file
again after every change.`,
		Example: `  pith live sign --secure-boot-keys sb /srv/tftp/pith-pxe.cfg`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if keysDir == "" {
				return errors.New("--secure-boot-keys DIR is required")
			}
			keys, err := secureboot.Load(keysDir)
			if err != nil {
				return err
			}
			for _, f := range files {
				if err := keys.SignFileHash(f, time.Now(), crypto.SHA512); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s%s\n", f, secureboot.SigSuffix)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keysDir, "secure-boot-keys", "", "`DIR` of the keys the live media are signed with (pith keygen --secure-boot)")
	return cmd
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
// pith.iso's UEFI GRUB and pith-pxe.efi are made with the image's own UEFI
// GRUB, from cache (rootfs.LiveEFIGrub), when the image's SBOM names one;
// keys (nil: none) sign their UEFI paths for Secure Boot.
func makeLive(ctx context.Context, imageDir, cache string, m *manifest.Manifest, keys *secureboot.Keys, formats []string, work string, epoch int64, warn io.Writer) (map[string]string, error) {
	if err := liveSecureBoot(m, keys, warn); err != nil {
		return nil, err
	}
	inv, err := imageSBOM(imageDir, slices.Contains(formats, "iso") || slices.Contains(formats, "pxe"), warn)
	if err != nil {
		return nil, err
	}
	b := live.Boot{Keys: keys}
	var efiGrub []sbom.Deb
	if inv != nil {
		logf := func(format string, args ...any) { fmt.Fprintf(warn, format+"\n", args...) }
		if b.EFIGrub, efiGrub, err = rootfs.LiveEFIGrub(ctx, cache, inv.BootLoaders, logf); err != nil {
			return nil, fmt.Errorf("the live media's UEFI GRUB: %w", err)
		}
	}
	arts, err := live.Build(ctx, filepath.Join(imageDir, "pith.img"), m, b, formats, work, epoch)
	if err != nil {
		return nil, err
	}
	if inv == nil {
		return arts, nil
	}
	return arts, addLiveSBOM(ctx, arts, inv, formats, efiGrub, work, epoch)
}

// liveSecureBoot checks keys against the image m: the live media are
// signed with the keys the image is, or not at all (said on warn when the
// image is signed). A live system booted under Secure Boot installs the
// image, which then has to boot under the same db.
func liveSecureBoot(m *manifest.Manifest, keys *secureboot.Keys, warn io.Writer) error {
	switch {
	case keys == nil:
		if m.SecureBoot != nil {
			fmt.Fprintln(warn, "pith live: the image is signed for Secure Boot but no --secure-boot-keys were given: the live media's UEFI paths are unsigned, and firmware with Secure Boot on will not start them")
		}
		return nil
	case m.SecureBoot == nil:
		return errors.New("--secure-boot-keys: the image's boot chain is not signed (pith build --secure-boot-keys), so a live system booted under Secure Boot could not install it")
	}
	for r, c := range keys.Certs {
		if want := m.SecureBoot.Certs[r]; want != "" && want != secureboot.Fingerprint(c) {
			return fmt.Errorf("--secure-boot-keys: the %s certificate is not the one the image is signed for (%s, its manifest says)", r, want)
		}
	}
	return nil
}

// imageSBOM reads the image's SBOM; an image built before SBOMs has none
// (nil, said on warn): its live artifacts go out without one, and their
// UEFI GRUB (if efi) is the build host's.
func imageSBOM(imageDir string, efi bool, warn io.Writer) (*sbom.Inventory, error) {
	src := filepath.Join(imageDir, sbom.FileName)
	if _, err := os.Stat(src); os.IsNotExist(err) {
		host := ""
		if efi {
			host = ", and the live media's UEFI GRUB is the build host's"
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
func buildLive(ctx context.Context, c config.Config, outDir, cacheDir string, keys *secureboot.Keys, res *build.Result) ([]build.ArtifactInfo, error) {
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
	arts, err := makeLive(ctx, outDir, cacheDir, res.Manifest, keys, want, work, c.Epoch, os.Stderr)
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
// disk's, their UEFI GRUB efiGrub (nil: the host's).
func addLiveSBOM(ctx context.Context, arts map[string]string, inv *sbom.Inventory, formats []string, efiGrub []sbom.Deb, work string, epoch int64) error {
	var err error
	inv.Name, inv.Media = "pith-live", sbom.MediaLive
	if inv.BootLoaders, err = rootfs.LiveBootLoaders(ctx, slices.Contains(formats, "iso"), slices.Contains(formats, "pxe"), efiGrub); err != nil {
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
