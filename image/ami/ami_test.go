package ami

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/image/ami/amitest"
	"github.com/pith-os/pith/image/manifest"
)

type fakes struct {
	s *amitest.S3
	e *amitest.EC2
	c *Clients
}

func newFakes(t *testing.T) fakes {
	amitest.AWSEnv(t, true)
	s := amitest.NewS3(t, "pith-amis")
	e := amitest.NewEC2(t)
	amitest.Link(e, s)
	return fakes{s, e, testClients(t, s.URL, e.URL)}
}

// ec2Image makes a 12 MiB ec2 image with its manifest.
func ec2Image(t *testing.T) (string, *manifest.Manifest) {
	img := amitest.GPTImage(t, 12<<20, true, true)
	m, err := manifest.Read(amitest.WriteManifest(t, img, "1.2.0", "ec2"))
	if err != nil {
		t.Fatal(err)
	}
	return img, m
}

func opts(img string, m *manifest.Manifest) Options {
	return Options{Image: img, Manifest: m, Bucket: "pith-amis", PartSize: 5 << 20, PollInterval: time.Microsecond}
}

func countPrefix(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func TestUpload(t *testing.T) {
	f := newFakes(t)
	img, m := ec2Image(t)
	_, sum, _ := manifest.HashFile(img)
	o := opts(img, m)
	o.Regions = []string{"eu-central-1", "ap-southeast-2"}
	o.Public = true
	var log []string
	o.Log = func(format string, a ...any) { log = append(log, fmt.Sprintf(format, a...)) }

	res, err := Upload(context.Background(), f.c, o)
	if err != nil {
		t.Fatalf("Upload: %v\n%s", err, strings.Join(log, "\n"))
	}
	wantName := "pith-1.2.0-ec2-x86_64-" + sum[:12]
	if res.Name != wantName || res.Reused || res.SnapshotID == "" || len(res.Copies) != 2 {
		t.Fatalf("result %+v", res)
	}
	// The first call looks for an AMI of that name owned by the account.
	d := f.e.Calls("DescribeImages")
	if len(d) == 0 {
		t.Fatal("no DescribeImages")
	}
	wantForm(t, d[0].Form, map[string]string{"Owner.1": "self", "Filter.1.Name": "name", "Filter.1.Value.1": wantName, "ImageId.1": ""})
	if a := f.e.Actions(); a[0] != "DescribeImages" || a[1] != "ImportSnapshot" {
		t.Fatalf("EC2 calls %v: want DescribeImages, then ImportSnapshot", a)
	}
	// The import read the object the upload wrote; the object is gone now.
	imp := f.e.Calls("ImportSnapshot")
	if len(imp) != 1 || imp[0].Form.Get("DiskContainer.UserBucket.S3Key") != "pith-import/"+sum+".raw" {
		t.Fatalf("ImportSnapshot calls %+v", imp)
	}
	if ks := f.s.Keys(t, "pith-amis"); len(ks) != 0 {
		t.Fatalf("temporary object left in the bucket: %v", ks)
	}
	if n := countPrefix(f.s.Requests(), "DELETE /pith-amis/pith-import/"+sum+".raw"); n != 1 {
		t.Fatalf("%d DELETEs of the temporary object", n)
	}
	reg := f.e.Calls("RegisterImage")
	if len(reg) != 1 {
		t.Fatalf("%d RegisterImage calls", len(reg))
	}
	wantForm(t, reg[0].Form, map[string]string{"Name": wantName, "Description": "Pith 1.2.0 (ec2, x86_64, kernel 6.1.0-28-cloud-amd64)",
		"Architecture": "x86_64", "BootMode": "uefi-preferred", "BlockDeviceMapping.1.Ebs.SnapshotId": res.SnapshotID})
	im := f.e.ImageByID(res.ImageID)
	if im.Tags[TagSHA256] != sum || im.Tags[TagVersion] != "1.2.0" || im.Tags[TagPlatform] != "ec2" || im.Tags[TagArch] != "amd64" || !im.Public {
		t.Fatalf("registered image %+v", im)
	}
	for _, r := range o.Regions {
		cp := f.e.ImageByID(res.Copies[r])
		if cp == nil || cp.Region != r || cp.Name != wantName || !cp.Public || cp.Tags[TagSHA256] != sum {
			t.Fatalf("copy in %s: %+v", r, cp)
		}
	}

	// Again: the AMI and its copies are found, nothing is uploaded,
	// imported, registered or copied a second time.
	puts := countPrefix(f.s.Requests(), "PUT ")
	res2, err := Upload(context.Background(), f.c, o)
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Reused || res2.ImageID != res.ImageID || res2.Copies["eu-central-1"] != res.Copies["eu-central-1"] {
		t.Fatalf("second run %+v, first %+v", res2, res)
	}
	if countPrefix(f.s.Requests(), "PUT ") != puts || len(f.e.Calls("ImportSnapshot")) != 1 ||
		len(f.e.Calls("RegisterImage")) != 1 || len(f.e.Calls("CopyImage")) != 2 {
		t.Fatalf("second run repeated work: %v", f.e.Actions())
	}
}

// TestUploadArch: the AMI's architecture, boot mode, name and description
// follow the manifest's arch, so the amd64 and arm64 AMIs of one release
// are two AMIs side by side in one account and region.
func TestUploadArch(t *testing.T) {
	f := newFakes(t)
	for _, tc := range []struct {
		arch, bootMode     string // manifest arch ("": a manifest from before arm64), --boot-mode
		wantArch, wantMode string
	}{
		{"", "", "x86_64", "uefi-preferred"},
		{"amd64", "legacy-bios", "x86_64", "legacy-bios"},
		{"arm64", "", "arm64", "uefi"},
		{"arm64", "uefi", "arm64", "uefi"},
	} {
		t.Run("arch "+cmp.Or(tc.arch, "unset")+", boot mode "+cmp.Or(tc.bootMode, "default"), func(t *testing.T) {
			// The arm64 image's GPT has the BIOS-BOOT entry too, left empty.
			img := amitest.GPTImage(t, 12<<20, true, true)
			m, err := manifest.Read(amitest.WriteManifestArch(t, img, "1.3.0", "ec2", tc.arch))
			if err != nil {
				t.Fatal(err)
			}
			_, sum, _ := manifest.HashFile(img)
			o := opts(img, m)
			o.BootMode, o.Regions = tc.bootMode, []string{"eu-west-1"}
			res, err := Upload(context.Background(), f.c, o)
			if err != nil {
				t.Fatal(err)
			}
			wantName := "pith-1.3.0-ec2-" + tc.wantArch + "-" + sum[:12]
			if res.Name != wantName || res.Reused {
				t.Fatalf("result %+v, want a new AMI %s", res, wantName)
			}
			reg := f.e.Calls("RegisterImage")
			wantForm(t, reg[len(reg)-1].Form, map[string]string{"Name": wantName, "Architecture": tc.wantArch, "BootMode": tc.wantMode,
				"Description": "Pith 1.3.0 (ec2, " + tc.wantArch + ", kernel 6.1.0-28-cloud-" + m.Architecture() + ")",
				"EnaSupport":  "true", "SriovNetSupport": "simple", "VirtualizationType": "hvm", "RootDeviceName": RootDevice})
			im, cp := f.e.ImageByID(res.ImageID), f.e.ImageByID(res.Copies["eu-west-1"])
			if im.Architecture != tc.wantArch || im.BootMode != tc.wantMode || im.Tags[TagArch] != m.Architecture() {
				t.Errorf("registered %+v", im)
			}
			if cp == nil || cp.Architecture != tc.wantArch || cp.Name != wantName {
				t.Errorf("copy %+v", cp)
			}
		})
	}
	if n := len(f.e.Calls("RegisterImage")); n != 4 {
		t.Fatalf("%d AMIs registered for the four images, want 4", n)
	}
}

func TestUploadReusesObject(t *testing.T) {
	f := newFakes(t)
	img, m := ec2Image(t)
	size, sum, _ := manifest.HashFile(img)
	key := "pith-import/" + sum + ".raw"
	// An earlier run died after its upload.
	if err := putImage(context.Background(), f.c.S3, "pith-amis", key, img, sum, 5<<20, nil, nil); err != nil {
		t.Fatal(err)
	}
	puts := countPrefix(f.s.Requests(), "PUT ")
	var log []string
	o := opts(img, m)
	o.Log = func(format string, a ...any) { log = append(log, fmt.Sprintf(format, a...)) }
	if _, err := Upload(context.Background(), f.c, o); err != nil {
		t.Fatal(err)
	}
	if countPrefix(f.s.Requests(), "PUT ") != puts {
		t.Fatalf("uploaded again although s3://pith-amis/%s held the image (%d bytes)", key, size)
	}
	if !strings.Contains(strings.Join(log, "\n"), "already holds this image") {
		t.Fatalf("log does not say the object was reused:\n%s", strings.Join(log, "\n"))
	}
	if ks := f.s.Keys(t, "pith-amis"); len(ks) != 0 {
		t.Fatalf("objects left: %v", ks)
	}
}

// Every failure after the upload still deletes the temporary object.
func TestUploadFailuresDeleteObject(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *amitest.EC2)
		err   string
	}{
		{"import task fails", func(e *amitest.EC2) {
			e.Script = []amitest.TaskStep{amitest.Step("active", "20", "validating"), amitest.Step("deleted", "", "ClientError: Disk validation failed [Invalid Disk Image]")}
		}, "failed (deleted): ClientError: Disk validation failed [Invalid Disk Image]"},
		{"no vmimport role", func(e *amitest.EC2) {
			e.SetFail("ImportSnapshot", *amitest.Err(400, "InvalidParameter", vmimportMsg))
		}, "vmimport service role is missing"},
		{"import quota", func(e *amitest.EC2) {
			e.SetFail("ImportSnapshot", *amitest.Err(400, "ResourceLimitExceeded", "You have reached the limit for import snapshot tasks"))
		}, "AWS quota reached"},
		{"ami quota", func(e *amitest.EC2) {
			e.SetFail("RegisterImage", *amitest.Err(400, "ResourceLimitExceeded", "AMI quota exceeded"))
		}, "(snapshot snap-"},
		{"credentials rejected while waiting", func(e *amitest.EC2) {
			e.SetFail("DescribeImportSnapshotTasks", *amitest.Err(401, "AuthFailure", "AWS was not able to validate the provided access credentials"))
		}, "AWS rejected the credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakes(t)
			tc.setup(f.e)
			img, m := ec2Image(t)
			_, err := Upload(context.Background(), f.c, opts(img, m))
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tc.err)
			}
			if countPrefix(f.s.Requests(), "PUT ") == 0 {
				t.Fatal("nothing was uploaded")
			}
			if ks := f.s.Keys(t, "pith-amis"); len(ks) != 0 {
				t.Fatalf("temporary object left after a failure: %v", ks)
			}
		})
	}
}

// Bad input is refused before anything is uploaded or registered.
func TestUploadRefuses(t *testing.T) {
	img, m := ec2Image(t)
	qemuImg := amitest.GPTImage(t, 8<<20, true, true)
	qm, err := manifest.Read(amitest.WriteManifest(t, qemuImg, "1.2.0", "qemu"))
	if err != nil {
		t.Fatal(err)
	}
	stale := *m
	stale.Artifacts = []manifest.Artifact{{Name: "pith.img", Format: "raw", SHA256: strings.Repeat("ab", 32)}}
	espOnly := amitest.GPTImage(t, 8<<20, true, false)
	armImg := amitest.GPTImage(t, 8<<20, true, true)
	am, err := manifest.Read(amitest.WriteManifestArch(t, armImg, "1.2.0", "ec2", "arm64"))
	if err != nil {
		t.Fatal(err)
	}
	riscImg := amitest.GPTImage(t, 8<<20, true, true)
	rm, err := manifest.Read(amitest.WriteManifestArch(t, riscImg, "1.2.0", "ec2", "riscv64"))
	if err != nil {
		t.Fatal(err)
	}
	arm := func(o *Options) { o.Image, o.Manifest = armImg, am }
	notDisk := img + ".junk"
	if err := os.WriteFile(notDisk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(o *Options)
		setup func(f fakes)
		err   string
	}{
		{"qemu image", func(o *Options) { o.Image, o.Manifest = qemuImg, qm }, nil, `built for platform "qemu", not ec2`},
		{"stale manifest", func(o *Options) { o.Manifest = &stale }, nil, "does not match its manifest"},
		{"not a disk", func(o *Options) { o.Image, o.Manifest, o.Name = notDisk, nil, "pith-x" }, nil, "no MBR boot signature"},
		{"bios without partition", func(o *Options) { o.Image, o.Manifest, o.Name, o.BootMode = espOnly, nil, "pith-x", "legacy-bios" }, nil, "no BIOS boot partition"},
		{"bad boot mode", func(o *Options) { o.BootMode = "bios" }, nil, `--boot-mode "bios": use one of uefi-preferred, uefi, legacy-bios`},
		{"unknown arch", func(o *Options) { o.Image, o.Manifest = riscImg, rm }, nil, `architecture "riscv64" (from the build manifest): pith ami registers amd64 (x86_64) and arm64 AMIs only`},
		{"unknown --arch", func(o *Options) { o.Manifest, o.Name, o.Arch = nil, "pith-x", "s390x" }, nil, `architecture "s390x" (from --arch)`},
		{"--arch against the manifest", func(o *Options) { arm(o); o.Arch = "amd64" }, nil, "--arch amd64, but the manifest says " + armImg + " is arm64"},
		{"arm64 uefi-preferred", func(o *Options) { arm(o); o.BootMode = "uefi-preferred" }, nil, "--boot-mode uefi-preferred: arm64 AMIs boot UEFI only"},
		{"arm64 legacy-bios", func(o *Options) { arm(o); o.BootMode = "legacy-bios" }, nil, "--boot-mode legacy-bios: arm64 AMIs boot UEFI only"},
		{"name of another arch", func(o *Options) { arm(o); o.Name = "pith-shared" }, func(f fakes) {
			if _, err := registerImage(context.Background(), f.c.EC2, RegisterParams{Name: "pith-shared", SnapshotID: "snap-9", BootMode: "uefi", Arch: "x86_64"}); err != nil {
				t.Fatal(err)
			}
		}, ") already exists for x86_64, this image is arm64: pass another --name"},
		{"no name", func(o *Options) { o.Manifest = nil }, nil, "pass --manifest (pith.manifest.json) or --name"},
		{"bad name", func(o *Options) { o.Name = "pith*1" }, nil, `AMI name "pith*1"`},
		{"no bucket", func(o *Options) { o.Bucket = "" }, nil, "no --bucket"},
		{"missing bucket", func(o *Options) { o.Bucket = "pith-nope" }, nil, "bucket pith-nope does not exist"},
		{"bucket elsewhere", func(o *Options) { o.Bucket = amitest.OtherRegionBucket }, nil, "pass --region eu-west-1"},
		{"bad region", func(o *Options) { o.Regions = []string{"eu-central-1", "eu-central1"} }, nil, `--regions: "eu-central1" is not an AWS region name`},
		{"own region copy", func(o *Options) { o.Regions = []string{"us-east-1"} }, nil, "--regions lists us-east-1, the import region itself"},
		{"name from another image", func(o *Options) { o.Name = "pith-taken" }, func(f fakes) {
			if _, err := registerImage(context.Background(), f.c.EC2, RegisterParams{Name: "pith-taken", SnapshotID: "snap-9", BootMode: "uefi",
				Tags: map[string]string{TagSHA256: strings.Repeat("cd", 32)}}); err != nil {
				t.Fatal(err)
			}
		}, "already exists from a different image (sha256 cdcdcdcdcdcd"},
		{"failed AMI of that name", func(o *Options) { o.Name = "pith-failed" }, func(f fakes) {
			id, err := registerImage(context.Background(), f.c.EC2, RegisterParams{Name: "pith-failed", SnapshotID: "snap-9", BootMode: "uefi"})
			if err != nil {
				t.Fatal(err)
			}
			f.e.SetImageState(id, "failed")
		}, "already exists but is failed: deregister it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakes(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			o := opts(img, m)
			tc.edit(&o)
			_, err := Upload(context.Background(), f.c, o)
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tc.err)
			}
			if n := countPrefix(f.s.Requests(), "PUT "); n != 0 {
				t.Fatalf("%d PUTs to S3 before refusing", n)
			}
			if n := len(f.e.Calls("ImportSnapshot")); n != 0 {
				t.Fatalf("ImportSnapshot called before refusing")
			}
		})
	}
}

func TestNewClientsErrors(t *testing.T) {
	amitest.AWSEnv(t, false)
	_, err := NewClients(context.Background(), "", Endpoints{})
	if err == nil || !strings.Contains(err.Error(), "no usable AWS credentials: set AWS_ACCESS_KEY_ID") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("no credentials: %v", err)
	}
	amitest.AWSEnv(t, true)
	os.Unsetenv("AWS_REGION")
	_, err = NewClients(context.Background(), "", Endpoints{})
	if err == nil || !strings.Contains(err.Error(), "no AWS region: pass --region") {
		t.Fatalf("no region: %v", err)
	}
	c, err := NewClients(context.Background(), "eu-north-1", Endpoints{})
	if err != nil || c.Region != "eu-north-1" {
		t.Fatalf("--region: %v %v", c, err)
	}
}
