package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pith-os/pith/image/ami"
)

func init() {
	var (
		o                               ami.Options
		manifestPath, region, regions   string
		endpoint, s3Endpoint, ec2Endpnt string
	)
	amiCmd := &cobra.Command{
		Use:   "ami",
		Short: "Publish Pith images as Amazon Machine Images",
	}
	upload := &cobra.Command{
		Use:   "upload",
		Short: "Upload a raw Pith image to S3, import it as a snapshot and register an AMI",
		Long: `Turn a raw image from 'pith build --platform ec2' into an AMI.

The image's GPT is checked first. It is then uploaded in parts to
--bucket (which must be in the import region), imported as an EBS snapshot
(ImportSnapshot, format RAW, through the vmimport service role), and
registered as an HVM AMI with ENA support and root device /dev/xvda. The
temporary S3 object is deleted afterwards, also when a step fails.

The AMI's architecture is the image's, from the build manifest: x86_64 for
amd64 images, arm64 for 'pith build --arch arm64 --platform ec2' images
(Graviton instances); any other is refused. The boot mode defaults to
uefi-preferred for x86_64 (the image boots both ways) and is uefi for
arm64, which boots UEFI only.

The AMI's name and description come from the build manifest (version,
platform, architecture, and the image's SHA-256 prefix), so the amd64 and
arm64 AMIs of one release have different names; --name overrides.
Re-running is safe: an AMI of the same name owned by this account is reused
(and refused if it was made from a different image or for the other
architecture), and an object already in the bucket with this image's size
and checksum is not uploaded again.

Credentials and region come from the standard AWS chain (AWS_* variables,
~/.aws/config and credentials, AWS_PROFILE, SSO, roles); --region overrides
the region. --endpoint-url (or the per-service flags) points at S3- or
EC2-compatible servers.`,
		Example: `  pith ami upload --image _out/pith.img --bucket my-pith-imports --region eu-central-1
  pith ami upload --image _out/pith.img --bucket my-pith-imports --regions us-east-1,us-west-2 --public
  AWS_PROFILE=release pith ami upload --image _out/pith.img --bucket b --boot-mode legacy-bios
  pith build --arch arm64 --platform ec2 --out _out/arm64 && pith ami upload --image _out/arm64/pith.img --bucket my-pith-imports`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Image == "" {
				return errors.New("no --image: pass the raw image, e.g. --image _out/pith.img")
			}
			m, err := ami.ReadManifestFor(o.Image, manifestPath)
			if err != nil {
				return fmt.Errorf("reading the build manifest: %v (pass --manifest or --name)", err)
			}
			o.Manifest, o.Regions = m, nil
			for _, r := range strings.Split(regions, ",") {
				if r = strings.TrimSpace(r); r != "" {
					o.Regions = append(o.Regions, r)
				}
			}
			ep := ami.Endpoints{S3: endpoint, EC2: endpoint}
			if s3Endpoint != "" {
				ep.S3 = s3Endpoint
			}
			if ec2Endpnt != "" {
				ep.EC2 = ec2Endpnt
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := ami.NewClients(ctx, region, ep)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			o.Log = func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
			if term.IsTerminal(int(os.Stderr.Fd())) {
				o.Bars = os.Stderr
			}
			start := time.Now()
			res, err := ami.Upload(ctx, c, o)
			if err != nil {
				return err
			}
			how := "registered"
			if res.Reused {
				how = "exists"
			}
			fmt.Fprintf(out, "%s %s %s %s (%s)\n", how, c.Region, res.ImageID, res.Name, time.Since(start).Round(time.Second))
			for _, r := range o.Regions {
				fmt.Fprintf(out, "copy %s %s %s\n", r, res.Copies[r], res.Name)
			}
			return nil
		},
	}
	f := upload.Flags()
	f.StringVar(&o.Image, "image", "", "raw disk image to upload (pith.img from pith build --platform ec2)")
	f.StringVar(&manifestPath, "manifest", "", "build manifest (default: pith.manifest.json beside the image)")
	f.StringVar(&o.Bucket, "bucket", "", "S3 bucket in the import region for the temporary upload (required)")
	f.StringVar(&region, "region", "", "AWS region to import into (default: from the AWS configuration)")
	f.StringVar(&o.Name, "name", "", "AMI name (default: pith-VERSION-PLATFORM-ARCH-SHA256PREFIX, ARCH x86_64 or arm64)")
	f.StringVar(&o.Description, "description", "", "AMI description (default: from the manifest)")
	f.StringVar(&o.Arch, "arch", "", "image architecture, amd64 or arm64, for an image without a manifest (default: the manifest's, else amd64; must agree with the manifest)")
	f.StringVar(&o.BootMode, "boot-mode", "", "AMI boot mode: "+strings.Join(ami.BootModes, ", ")+" (default: uefi-preferred for amd64, uefi for arm64, which allows uefi only)")
	f.StringVar(&regions, "regions", "", "comma-separated regions to copy the AMI to")
	f.BoolVar(&o.Public, "public", false, "make the AMI (and its copies) launchable by everyone")
	f.StringVar(&o.RoleName, "role-name", "", "service role for ImportSnapshot (default: vmimport)")
	f.StringVar(&endpoint, "endpoint-url", "", "S3- and EC2-compatible endpoint URL instead of AWS's")
	f.StringVar(&s3Endpoint, "s3-endpoint-url", "", "S3-compatible endpoint URL (overrides --endpoint-url for S3)")
	f.StringVar(&ec2Endpnt, "ec2-endpoint-url", "", "EC2-compatible endpoint URL (overrides --endpoint-url for EC2)")
	f.Int64Var(&o.PartSize, "part-size", ami.DefaultPartSize, "multipart upload part size in bytes (at least 5 MiB)")
	f.DurationVar(&o.PollInterval, "poll-interval", ami.DefaultPollInterval, "how often to poll the import task and AMI state")
	amiCmd.AddCommand(upload)
	rootCmd.AddCommand(amiCmd)
}
