// Package cli is the `install` command of pith (workstation) and pithctl
// (on the live system): one set of flags for both.
package cli

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/install"
	"github.com/pith-os/pith/image/layout"
)

// Command returns the install command (with its sign subcommand).
func Command() *cobra.Command {
	var (
		o                 install.Options
		keyFiles          []string
		userDataPath      string
		noDefaultKeys     bool
		signKey, manifest string
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Write a Pith image to a disk, with user-data for its first boot",
		Long: `Write a built Pith image (pith build's pith.img) to a disk and make it bootable.

Before the first byte is written, pith install checks the disk (not mounted,
not in use, no partition table unless --force), the image manifest's
signature (pith.manifest.json.sig, when present or --require-signature;
trusted keys: --key and the running Pith's release keys), the image's size
and SHA-256 against the manifest, and the user-data (a #cloud-config or an
Ignition config, validated as pith validate does). A
URL or a zstd-compressed image (NAME.zst) is staged, sparse, in --tmp while
it is hashed. After the copy, a disk larger than the image gets its backup
GPT at its end with ROOT grown to fill it, and the user-data goes into the
OEM partition: a #cloud-config as cloud-config.yml, applied on every boot;
an Ignition config as config.ign (as flatcar-install -i), applied once on
first boot (its kernelArguments and storage by the initramfs).

Runs on any Linux as root (pith install) and on the live ISO/PXE system
(sudo pithctl install).`,
		Example: `  pith install --device /dev/sda --image _out/pith.img --user-data node.yml
  pith install --device /dev/sdb --image _out/pith.img --user-data config.ign
  pith install --device /dev/nvme0n1 --image http://10.0.0.1/pith.img.zst --key pith-release.pub --require-signature
  pith install sign --key keys/pith-release.key _out/pith.manifest.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Device == "" || o.Image == "" {
				return fmt.Errorf("--device and --image are required")
			}
			dirs := []string{}
			if !noDefaultKeys {
				dirs = append(dirs, channels.ImageKeyDir, channels.OEMKeyDir)
			}
			keys, err := channels.LoadKeyring(dirs...)
			if err != nil {
				return err
			}
			for _, p := range keyFiles {
				k, err := channels.LoadPublicKeyFile(p)
				if err != nil {
					return err
				}
				keys.Add(k)
			}
			o.Keys = keys
			if userDataPath != "" {
				if o.UserData, err = os.ReadFile(userDataPath); err != nil {
					return fmt.Errorf("user-data: %v", err)
				}
			}
			out := cmd.OutOrStdout()
			o.Log = func(format string, args ...any) { fmt.Fprintf(out, "pith install: "+format+"\n", args...) }
			o.Progress = progress(os.Stderr)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := install.Install(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "pith install: Pith %s (%s) is on %s; %s written in %s\n", res.Version, res.Platform, o.Device,
				layout.Human(res.DataWritten), res.Write.Round(100*time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Device, "device", "", "`DEV`ice to install to (a whole disk, e.g. /dev/sda; or an image file)")
	f.StringVar(&o.Image, "image", "", "raw Pith image `FILE|URL` (pith.img, or pith.img.zst)")
	f.StringVar(&o.Manifest, "manifest", "", "image manifest `FILE|URL` (default: pith.manifest.json beside the image)")
	f.StringVar(&o.Signature, "signature", "", "manifest signature `FILE|URL` (default: the manifest's name + .sig)")
	f.StringArrayVar(&keyFiles, "key", nil, "trusted public release key `FILE` (repeatable)")
	f.BoolVar(&noDefaultKeys, "no-default-keys", false, "do not trust the running Pith's release keys ("+channels.ImageKeyDir+")")
	f.BoolVar(&o.RequireSignature, "require-signature", false, "refuse an image whose manifest is not signed by a trusted key")
	f.StringVar(&userDataPath, "user-data", "", "#cloud-config or Ignition config `FILE` the installed machine applies on first boot (OEM partition)")
	f.StringVar(&o.Platform, "platform", "", "refuse an image built for another `PLATFORM` (qemu, vagrant, ec2, metal...)")
	f.BoolVar(&o.Force, "force", false, "overwrite a disk that holds a partition table, filesystem or volume (never a mounted or otherwise used one)")
	f.StringVar(&o.TempDir, "tmp", "", "`DIR` to stage a URL or compressed image in (default: $TMPDIR)")

	sign := &cobra.Command{
		Use:   "sign --key KEY MANIFEST",
		Short: "Sign an image manifest (writes MANIFEST.sig) so pith install can check it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			manifest = args[0]
			k, err := channels.LoadPrivateKey(signKey)
			if err != nil {
				return err
			}
			body, err := os.ReadFile(manifest)
			if err != nil {
				return err
			}
			sig, err := install.SignManifest(body, k)
			if err != nil {
				return err
			}
			if err := os.WriteFile(manifest+install.SignatureSuffix, sig, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s with key %s: %s\n", manifest, channels.KeyID(k.Public().(ed25519.PublicKey)), manifest+install.SignatureSuffix)
			return nil
		},
	}
	sign.Flags().StringVar(&signKey, "key", "", "private release key `FILE` (pith keygen's pith-release.key)")
	sign.MarkFlagRequired("key")
	cmd.AddCommand(sign)
	return cmd
}

// progress draws a bar per step on a terminal, and otherwise (a serial
// console, a log) prints a line every 10%.
func progress(w *os.File) func(step string, done, total int64) {
	var bar *progressbar.ProgressBar
	var cur string
	last := int64(-1)
	tty := term.IsTerminal(int(w.Fd()))
	return func(step string, done, total int64) {
		if step != cur {
			cur, last = step, -1
			if tty {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(io.Writer(w)), progressbar.OptionSetDescription("  "+step),
					progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(200*time.Millisecond),
					progressbar.OptionClearOnFinish())
			}
		}
		if bar != nil {
			bar.Set64(done)
			return
		}
		if pct := done * 10 / max(total, 1); pct != last {
			last = pct
			fmt.Fprintf(w, "pith install: %s %d%% (%s of %s)\n", step, pct*10, layout.Human(done), layout.Human(total))
		}
	}
}
