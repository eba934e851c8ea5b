package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pith-os/pith/image/build"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/secureboot"
)

func init() {
	var (
		configPath, outDir, cacheDir, agentDir, platform, osVersion string
		arch                                                        string
		secureBootKeys                                              string
		releaseKeys, formats                                        []string
		debugUnverified                                             bool
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build a Pith disk image (pith.img, pith.qcow2, pith.manifest.json)",
		Long: `Build a bootable, A/B-partitioned Pith disk image.

The image is made from a Debian root filesystem (mmdebstrap), Debian's cloud
kernel, a u-root initramfs and GRUB for BIOS and UEFI. The output directory
receives pith.img (raw, sparse), pith.qcow2 (compressed) and
pith.manifest.json (inputs, partition table, SHA-256 of every artifact and
partition). Artifacts are written under temporary names and renamed only
when the build succeeds.

Without --config, the built-in default config is used (see
image/pith.yaml.example for every key). Same inputs and SOURCE_DATE_EPOCH
give byte-identical images. Downloads and the Debian tree are cached, so a
second build with a warm cache downloads nothing. Building the root
filesystem needs root.`,
		Example: `  pith build
  pith build --config pith.yaml --out _out
  pith build --arch arm64 --out _out/arm64
  pith build --arch arm64 --platform ec2 --out _out/arm64-ec2
  SOURCE_DATE_EPOCH=1767225600 pith build --version 1.2.0 --platform vagrant
  pith keygen --out keys && pith build --release-key keys/pith-release.pub
  pith keygen --secure-boot --out sb && pith build --secure-boot-keys sb`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := config.Load(configPath)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("platform") {
				c.Platform = platform
			}
			if cmd.Flags().Changed("arch") {
				c.SetArch(arch)
			}
			if cmd.Flags().Changed("formats") {
				c.Formats = formats
			}
			if cmd.Flags().Changed("version") {
				c.Version = osVersion
			}
			c.ReleaseKeys = append(c.ReleaseKeys, releaseKeys...)
			if err := c.Validate(); err != nil {
				return err
			}
			if cacheDir == "" {
				if cacheDir, err = defaultCacheDir(); err != nil {
					return err
				}
			}
			if agentDir == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("cannot locate the pith executable (%v): pass --agent-bin-dir", err)
				}
				agentDir = build.AgentDirFor(filepath.Dir(exe), c.Arch)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			o := build.Options{
				Config: c, OutDir: outDir, CacheDir: cacheDir, AgentBinDir: agentDir,
				Log:                func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) },
				DebugUnverifiedUSR: debugUnverified,
			}
			if secureBootKeys != "" {
				if o.SecureBoot, err = secureboot.Load(secureBootKeys); err != nil {
					return err
				}
			}
			if term.IsTerminal(int(os.Stderr.Fd())) {
				o.Bars = os.Stderr
			}
			fmt.Fprintf(out, "pith build: Pith %s for %s/%s, %s disk, formats %v, cache %s\n", c.Version, c.Platform, c.Arch, humanDisk(c.DiskSize), c.Formats, cacheDir)
			if o.SecureBoot == nil && c.Arch == "amd64" {
				fmt.Fprintln(out, "pith build: the boot chain is not signed for Secure Boot (no --secure-boot-keys): firmware with Secure Boot on will not start it; dm-verity still checks /usr")
			}
			res, err := build.Build(ctx, o)
			if err != nil {
				if ctx.Err() == context.Canceled {
					return fmt.Errorf("build interrupted: nothing was written to %s", outDir)
				}
				return err
			}
			if res.Artifacts, err = buildLive(ctx, c, outDir, cacheDir, o.SecureBoot, res); err != nil {
				return err
			}
			build.Summary(out, outDir, res.Artifacts, res.Steps, res.Total)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "build config `FILE` (YAML, strict; see image/pith.yaml.example); default: the built-in config")
	f.StringVar(&outDir, "out", "_out", "output `DIR` for pith.img, pith.qcow2 and pith.manifest.json (created if missing)")
	f.StringVar(&cacheDir, "cache", "", "cache `DIR` for Debian packages, root filesystem trees and the initramfs busybox (default: the user cache dir's pith/, e.g. ~/.cache/pith)")
	f.StringVar(&agentDir, "agent-bin-dir", "", "`DIR` holding static pithd, pithctl and pith-init to put in the image (default: the directory of this pith executable, its linux_ARCH/ for another arch; make bin builds them into _out/bin, make bin-arm64 into _out/bin/linux_arm64)")
	f.StringVar(&arch, "arch", config.DefaultArch, "machine `ARCH`: amd64 or arm64 (overrides the config's arch; arm64 is built under qemu-user and needs make deps-arm64 and make bin-arm64; it boots UEFI only, for platforms qemu and ec2: pith ami upload registers an arm64 AMI)")
	f.StringVar(&platform, "platform", "", "target `PLATFORM` written to OEM and the kernel line: qemu, vagrant or ec2 (overrides the config's platform)")
	f.StringSliceVar(&formats, "formats", nil, "output `FORMATS`, comma-separated: raw, qcow2, ec2, iso (live ISO), pxe (live PXE files) (overrides the config's formats)")
	f.StringVar(&osVersion, "version", "", "OS `VERSION` string for os-release and the manifest (overrides the config's version)")
	f.StringArrayVar(&releaseKeys, "release-key", nil, "public release key `FILE` (pith keygen's pith-release.pub) the image's update agent trusts, put into /usr/share/pith/release-keys (repeatable; adds to the config's release_keys). Without any, nodes refuse updates")
	f.BoolVar(&debugUnverified, "debug-unverified-usr", false, "DEBUG images only: let pith.verity=off (typed at the boot menu) mount /usr without dm-verity; the init logs it, the manifest records it")
	f.StringVar(&secureBootKeys, "secure-boot-keys", "", "sign the UEFI boot chain for Secure Boot with the keys in `DIR` (pith keygen --secure-boot): GRUB and the kernel with db, grub.cfg, verity cfgs, kernel and initrd with DIR/grub.key for GRUB's check_signatures=enforce")
	rootCmd.AddCommand(cmd)
}

func humanDisk(n int64) string {
	if n%(1<<30) == 0 {
		return fmt.Sprintf("%dGiB", n>>30)
	}
	return fmt.Sprintf("%dMiB", n>>20)
}
