// Package ami turns a raw Pith disk image into an Amazon Machine Image: it
// checks the image's GPT, uploads it to S3 in parts, imports it as an EBS
// snapshot (ImportSnapshot, format RAW), registers an HVM AMI of the image's
// architecture (x86_64 or arm64) with ENA support from it, and optionally
// copies it to other regions and makes it public. Every step looks for its
// own earlier result first, so a re-run after an interruption or a success
// creates nothing twice.
package ami

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pith-os/pith/image/manifest"
)

// BootModes are the values RegisterImage accepts for BootMode.
var BootModes = []string{"uefi-preferred", "uefi", "legacy-bios"}

// DefaultPollInterval is how often import and image states are polled.
const DefaultPollInterval = 15 * time.Second

// Endpoints points the clients at S3- or EC2-compatible servers; empty
// fields use AWS's endpoints for the region.
type Endpoints struct {
	S3, EC2 string
}

// Clients are the AWS clients for the import region; EC2In gives a client
// for another region (for CopyImage, which is called in the destination).
type Clients struct {
	Region string
	S3     *s3.Client
	EC2    *ec2.Client
	EC2In  func(region string) *ec2.Client
	cfg    aws.Config
}

// NewClients loads credentials and region from the standard AWS chain
// (environment, shared config and credentials files, AWS_PROFILE, SSO,
// web identity, container and instance roles). region overrides the chain's
// region. It fails early, with the fix, when there are no credentials.
func NewClients(ctx context.Context, region string, ep Endpoints) (*Clients, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %v (check AWS_PROFILE and ~/.aws/config)", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: pass --region or set AWS_REGION (or a region in the AWS profile)")
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return nil, fmt.Errorf("no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run 'aws configure' / 'aws sso login' (%s)", shorten(oneLine(err.Error()), 200))
	}
	c := &Clients{Region: cfg.Region, cfg: cfg}
	c.S3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if ep.S3 != "" {
			o.BaseEndpoint = aws.String(ep.S3)
			// S3-compatible servers rarely have wildcard DNS for
			// virtual-hosted buckets.
			o.UsePathStyle = true
		}
	})
	c.EC2In = func(r string) *ec2.Client {
		return ec2.NewFromConfig(cfg, func(o *ec2.Options) {
			o.Region = r
			if ep.EC2 != "" {
				o.BaseEndpoint = aws.String(ep.EC2)
			}
		})
	}
	c.EC2 = c.EC2In(cfg.Region)
	return c, nil
}

// Options says what to upload and how to register it.
type Options struct {
	Image    string             // raw disk image (pith.img)
	Manifest *manifest.Manifest // the build's manifest; nil needs Name
	Bucket   string             // S3 bucket in the import region
	Key      string             // object key; default pith-import/<sha256>.raw
	Name     string             // AMI name; default from the manifest
	// Arch is the image's architecture (amd64, arm64) when there is no
	// manifest, which names it otherwise; "" = the manifest's, or amd64.
	Arch string
	// Description defaults to one made from the manifest.
	Description string
	BootMode    string   // uefi-preferred, uefi, legacy-bios; "" = DefaultBootMode
	Regions     []string // copy the AMI to these regions too
	Public      bool     // grant launch permission to all
	RoleName    string   // ImportSnapshot service role; "" = vmimport

	PartSize     int64         // multipart part size; 0 = DefaultPartSize
	PollInterval time.Duration // 0 = DefaultPollInterval
	Bars         io.Writer     // progress bars; nil = none
	Log          func(format string, args ...any)
}

// Result is what Upload produced or found.
type Result struct {
	Name       string
	ImageID    string
	SnapshotID string // empty when an existing AMI was reused
	Reused     bool   // the AMI already existed
	SHA256     string
	Copies     map[string]string // region -> AMI id
}

var regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$`)

// DefaultName is the AMI name for a build: version, platform, EC2's name of
// the architecture and the first 12 hex digits of the image's SHA-256, so
// neither a rebuilt image nor the other architecture's image of a release
// collides with an earlier AMI.
func DefaultName(m *manifest.Manifest, sum string) string {
	v := strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("().-_", r)) {
			return r
		}
		return '-'
	}, m.Version)
	return fmt.Sprintf("pith-%s-%s-%s-%s", v, m.Platform, ec2ArchOf(m), sum[:12])
}

// DefaultDescription describes a build for the AMI.
func DefaultDescription(m *manifest.Manifest) string {
	d := fmt.Sprintf("Pith %s (%s, %s", m.Version, m.Platform, ec2ArchOf(m))
	if m.KernelVersion != "" {
		d += ", kernel " + m.KernelVersion
	}
	return shorten(d+")", 255)
}

// Upload makes the AMI, or finds the one an earlier run made.
func Upload(ctx context.Context, c *Clients, o Options) (*Result, error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := o.check(c.Region); err != nil {
		return nil, err
	}

	// Check the image before touching AWS.
	info, err := CheckImage(o.Image, o.BootMode)
	if err != nil {
		return nil, err
	}
	logf("checked the GPT of %s (%d MiB, %d partitions); computing its SHA-256", o.Image, info.Size>>20, info.Partitions)
	size, sum, err := manifest.HashFile(o.Image)
	if err != nil {
		return nil, err
	}
	if m := o.Manifest; m != nil {
		for _, a := range m.Artifacts {
			if a.Format == "raw" && a.SHA256 != sum {
				return nil, fmt.Errorf("%s does not match its manifest (sha256 %s, manifest says %s for %s): pass the manifest of this build with --manifest", o.Image, sum[:12], shorten(a.SHA256, 12), a.Name)
			}
		}
	}
	logf("sha256 %s", sum)
	if o.Name == "" {
		if o.Manifest == nil {
			return nil, errors.New("no build manifest and no --name: pass --manifest (pith.manifest.json) or --name")
		}
		o.Name = DefaultName(o.Manifest, sum)
	}
	if !nameRE.MatchString(o.Name) {
		return nil, fmt.Errorf("AMI name %q: 3-128 characters of letters, digits, spaces and ( ) [ ] . / - ' @ _", o.Name)
	}
	if o.Description == "" && o.Manifest != nil {
		o.Description = DefaultDescription(o.Manifest)
	}
	if o.Description == "" {
		o.Description = o.Name
	}
	res := &Result{Name: o.Name, SHA256: sum, Copies: map[string]string{}}

	// An AMI of this name from an earlier run?
	im, err := findImage(ctx, c.EC2, o.Name)
	if err != nil {
		return nil, err
	}
	if im != nil {
		if t := tag(im, TagSHA256); t != "" && t != sum {
			return nil, fmt.Errorf("AMI %s (%s) already exists from a different image (sha256 %s, this one %s): pass another --name or deregister it", o.Name, aws.ToString(im.ImageId), shorten(t, 12), sum[:12])
		}
		if want, _ := EC2Arch(o.Arch); im.Architecture != "" && string(im.Architecture) != want {
			return nil, fmt.Errorf("AMI %s (%s) already exists for %s, this image is %s: pass another --name or deregister it", o.Name, aws.ToString(im.ImageId), im.Architecture, want)
		}
		if im.State != types.ImageStateAvailable && im.State != types.ImageStatePending {
			return nil, fmt.Errorf("AMI %s (%s) already exists but is %s: deregister it (aws ec2 deregister-image --image-id %s) and run again", o.Name, aws.ToString(im.ImageId), im.State, aws.ToString(im.ImageId))
		}
		res.ImageID, res.Reused = aws.ToString(im.ImageId), true
		logf("AMI %s already exists in %s: %s (%s), reusing it", o.Name, c.Region, res.ImageID, im.State)
	} else {
		if err := makeImage(ctx, c, o, size, sum, res, logf); err != nil {
			return res, err
		}
	}

	if len(o.Regions) > 0 || o.Public {
		if err := waitImage(ctx, c.EC2, res.ImageID, c.Region, o.PollInterval, logf); err != nil {
			return res, err
		}
	}
	for _, r := range o.Regions {
		id, reused, err := copyImage(ctx, c.EC2In(r), res.ImageID, c.Region, r, o.Name, o.Description)
		if err != nil {
			return res, err
		}
		res.Copies[r] = id
		if reused {
			logf("AMI %s already exists in %s: %s", o.Name, r, id)
		} else {
			logf("copying %s to %s: %s", res.ImageID, r, id)
		}
	}
	if o.Public {
		if err := makePublic(ctx, c.EC2, res.ImageID, c.Region); err != nil {
			return res, err
		}
		logf("%s in %s is public", res.ImageID, c.Region)
		for _, r := range o.Regions {
			id := res.Copies[r]
			// A copy can be made public only once it is available.
			if err := waitImage(ctx, c.EC2In(r), id, r, o.PollInterval, logf); err != nil {
				return res, err
			}
			if err := makePublic(ctx, c.EC2In(r), id, r); err != nil {
				return res, err
			}
			logf("%s in %s is public", id, r)
		}
	}
	return res, nil
}

// makeImage uploads, imports and registers; the S3 object is deleted
// afterwards whatever happened.
func makeImage(ctx context.Context, c *Clients, o Options, size int64, sum string, res *Result, logf func(string, ...any)) (err error) {
	if err := checkBucket(ctx, c.S3, o.Bucket); err != nil {
		return err
	}
	key := o.Key
	if key == "" {
		key = "pith-import/" + sum + ".raw"
	}
	defer func() {
		if derr := deleteObject(ctx, c.S3, o.Bucket, key); derr != nil {
			if err == nil {
				err = derr
			} else {
				logf("%v", derr)
			}
			return
		}
		logf("deleted s3://%s/%s", o.Bucket, key)
	}()
	same, err := objectMatches(ctx, c.S3, o.Bucket, key, size, sum)
	if err != nil {
		return err
	}
	if same {
		logf("s3://%s/%s already holds this image, not uploading again", o.Bucket, key)
	} else {
		start := time.Now()
		if err := putImage(ctx, c.S3, o.Bucket, key, o.Image, sum, o.PartSize, o.Bars, logf); err != nil {
			return err
		}
		secs := time.Since(start).Seconds()
		logf("uploaded s3://%s/%s: %d MiB in %.1fs (%.1f MiB/s)", o.Bucket, key, size>>20, secs, float64(size)/(1<<20)/max(secs, 1e-3))
	}
	task, err := importSnapshot(ctx, c.EC2, o.Bucket, key, o.Description, o.RoleName)
	if err != nil {
		return err
	}
	logf("import task %s started", task)
	snap, err := waitImport(ctx, c.EC2, task, o.PollInterval, o.Bars, logf)
	if err != nil {
		return err
	}
	res.SnapshotID = snap
	logf("snapshot %s imported", snap)
	tags := map[string]string{TagSHA256: sum, TagArch: o.Arch}
	if m := o.Manifest; m != nil {
		tags[TagVersion], tags[TagPlatform] = m.Version, m.Platform
	}
	arch, _ := EC2Arch(o.Arch)
	id, err := registerImage(ctx, c.EC2, RegisterParams{Name: o.Name, Description: o.Description, SnapshotID: snap, BootMode: o.BootMode, Arch: arch, Tags: tags})
	if err != nil {
		return fmt.Errorf("%w (snapshot %s is kept: delete it with aws ec2 delete-snapshot if unwanted)", err, snap)
	}
	res.ImageID = id
	logf("registered AMI %s (%s) in %s", id, o.Name, c.Region)
	return nil
}

// ReadManifestFor loads the manifest for image: path if given, else
// pith.manifest.json next to the image if present (nil, nil if not).
func ReadManifestFor(image, path string) (*manifest.Manifest, error) {
	if path == "" {
		p := filepath.Join(filepath.Dir(image), manifest.FileName)
		if _, err := os.Stat(p); err != nil {
			return nil, nil
		}
		path = p
	}
	return manifest.Read(path)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func containsAny(s string, subs ...string) bool {
	l := strings.ToLower(s)
	for _, x := range subs {
		if strings.Contains(l, strings.ToLower(x)) {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// check fills o's defaults and refuses what AWS would refuse later, before
// any request; importRegion is the region the image is imported into.
func (o *Options) check(importRegion string) error {
	if err := o.checkArch(); err != nil {
		return err
	}
	if o.BootMode == "" {
		o.BootMode = DefaultBootMode(o.Arch)
	}
	if !slices.Contains(BootModes, o.BootMode) {
		return fmt.Errorf("--boot-mode %q: use one of %s", o.BootMode, strings.Join(BootModes, ", "))
	}
	if o.Arch == "arm64" && o.BootMode != "uefi" {
		return fmt.Errorf("--boot-mode %s: arm64 AMIs boot UEFI only (Graviton instances have no BIOS, the image no BIOS boot code): use --boot-mode uefi or leave it out", o.BootMode)
	}
	if o.Bucket == "" {
		return errors.New("no --bucket: ImportSnapshot reads the image from an S3 bucket in the import region")
	}
	if o.PartSize != 0 && o.PartSize < 5<<20 {
		return fmt.Errorf("part size %d: S3 needs parts of at least 5 MiB (5242880 bytes)", o.PartSize)
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	for _, r := range o.Regions {
		if !regionRE.MatchString(r) {
			return fmt.Errorf("--regions: %q is not an AWS region name (like eu-central-1)", r)
		}
		if r == importRegion {
			return fmt.Errorf("--regions lists %s, the import region itself: leave it out", r)
		}
	}
	if m := o.Manifest; m != nil && m.Platform != "ec2" {
		return fmt.Errorf("%s was built for platform %q, not ec2 (it would not read EC2 user-data or SSH keys): build it with pith build --platform ec2", o.Image, m.Platform)
	}
	return nil
}
