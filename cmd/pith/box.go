package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/vagrant/box"
)

func init() {
	var o box.Options
	noOEM := false
	cmd := &cobra.Command{
		Use:   "box",
		Short: "Package a Pith qcow2 image as a Vagrant box for the libvirt provider",
		Long: `Package pith.qcow2 as a Vagrant box (libvirt provider): a tar.gz with
metadata.json (provider libvirt, format qcow2, virtual size in GB), box.img
and a Vagrantfile with the provider's defaults, plus a box catalog JSON
(default: the box's name with .json) listing every version packaged so far
with its URL and SHA-256, for 'vagrant box add CATALOG'.

The box's disk is the image with the vagrant user (Vagrant's insecure key,
passwordless sudo) in the OEM partition's cloud-config
(/usr/share/oem/cloud-config.yml on the node), applied on first boot as
CoreOS boxes did, so 'vagrant up' passes nothing to QEMU. The version and
the tar entries' mtimes come from pith.manifest.json beside the image, so
the same image gives the same box. Build the image for the
vagrant platform (pith build --platform vagrant): its first-boot stage
reads the user-data the Vagrantfile uploads before any other source.`,
		Example: `  pith build --platform vagrant --out _out/vagrant
  pith box --image _out/vagrant/pith.qcow2 --out _out/pith.box
  vagrant box add --name pith _out/pith.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.OEM = !noOEM
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := box.Build(ctx, o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.Platform != "" && res.Platform != "vagrant" {
				fmt.Fprintf(cmd.ErrOrStderr(), "pith box: warning: the image was built for platform %q: its first boot reads QEMU's fw_cfg first and does not wait for the user-data the Vagrantfile uploads (pithd starts a one-node KV at boot); build with pith build --platform vagrant\n", res.Platform)
			}
			fmt.Fprintf(out, "pith box: %s (%s, sha256 %s), version %s, virtual size %d GB\n", res.Box, layout.Human(res.Size), res.SHA256, res.Version, res.VirtualGB)
			fmt.Fprintf(out, "pith box: catalog %s; add it with: vagrant box add %s\n", res.Catalog, res.Catalog)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Image, "image", "_out/pith.qcow2", "qcow2 `IMAGE` to package (pith build writes pith.qcow2)")
	f.StringVar(&o.Out, "out", "_out/pith.box", "box `FILE` to write")
	f.StringVar(&o.Version, "version", "", "box `VERSION` (numbers and dots; default: the version in pith.manifest.json beside the image)")
	f.StringVar(&o.Name, "name", box.DefaultName, "box `NAME` in the catalog (what config.vm.box names)")
	f.StringVar(&o.Catalog, "catalog", "", "catalog `FILE` to create or add this version to (default: --out with .json)")
	f.StringVar(&o.URL, "url", "", "`URL` the catalog gives for the box (default: file:// of --out)")
	f.BoolVar(&noOEM, "no-oem-config", false, "package the image as is, without the OEM cloud-config that makes the vagrant user (for images that carry their own)")
	rootCmd.AddCommand(cmd)
}
