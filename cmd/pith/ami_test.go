package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/image/ami/amitest"
	"github.com/pith-os/pith/image/manifest"
)

// runAMI runs pith in-process with the ami upload flags back at their
// defaults (cobra keeps flag values between Execute calls).
func runAMI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c, _, err := rootCmd.Find([]string{"ami", "upload"})
	if err != nil {
		t.Fatal(err)
	}
	c.Flags().VisitAll(func(f *pflag.Flag) {
		f.Value.Set(f.DefValue)
		f.Changed = false
	})
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	err = rootCmd.Execute()
	return out.String(), err
}

func TestAMIUpload(t *testing.T) {
	amitest.AWSEnv(t, true)
	s := amitest.NewS3(t, "pith-amis")
	e := amitest.NewEC2(t)
	amitest.Link(e, s)
	img := amitest.GPTImage(t, 12<<20, true, true)
	amitest.WriteManifest(t, img, "2.0.1", "ec2")
	_, sum, err := manifest.HashFile(img)
	if err != nil {
		t.Fatal(err)
	}
	name := "pith-2.0.1-ec2-x86_64-" + sum[:12]
	args := []string{"ami", "upload", "--image", img, "--bucket", "pith-amis", "--region", "eu-west-3",
		"--s3-endpoint-url", s.URL, "--ec2-endpoint-url", e.URL, "--part-size", "5242880", "--poll-interval", "1us",
		"--regions", "eu-central-1, us-west-2", "--public", "--boot-mode", "uefi"}

	out, err := runAMI(t, args...)
	if err != nil {
		t.Fatalf("pith ami upload: %v\n%s", err, out)
	}
	reg := e.Calls("RegisterImage")
	if len(reg) != 1 || reg[0].Region != "eu-west-3" || reg[0].Form.Get("BootMode") != "uefi" || reg[0].Form.Get("Name") != name {
		t.Fatalf("RegisterImage %+v\n%s", reg, out)
	}
	t.Logf("pith ami upload:\n%s", out)
	i := strings.Index(out, "registered eu-west-3 ami-")
	if i < 0 {
		t.Fatalf("no 'registered' line:\n%s", out)
	}
	id := strings.Fields(out[i:])[2]
	for _, want := range []string{"uploaded s3://pith-amis/pith-import/" + sum + ".raw: 12 MiB", "snapshot snap-", "deleted s3://pith-amis/",
		"registered eu-west-3 " + id + " " + name, "copy eu-central-1 ami-", "copy us-west-2 ami-"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if im := e.ImageByID(id); im == nil || !im.Public {
		t.Fatalf("AMI %s: %+v", id, im)
	}
	if ks := s.Keys(t, "pith-amis"); len(ks) != 0 {
		t.Fatalf("objects left: %v", ks)
	}
	got := map[string]bool{}
	for _, c := range e.Calls("CopyImage") {
		got[c.Region] = true
	}
	if len(got) != 2 || !got["eu-central-1"] || !got["us-west-2"] {
		t.Fatalf("copies to %v", got)
	}

	// Re-run: the AMI exists, nothing is created.
	out, err = runAMI(t, args...)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "exists eu-west-3 "+id+" "+name) || len(e.Calls("RegisterImage")) != 1 || len(e.Calls("ImportSnapshot")) != 1 || len(e.Calls("CopyImage")) != 2 {
		t.Fatalf("second run created again (%v):\n%s", e.Actions(), out)
	}

	// --endpoint-url alone serves both services: here it points S3 at the
	// EC2 fake, so the bucket check fails, which shows it was used for S3.
	img2 := amitest.GPTImage(t, 8<<20, true, true)
	amitest.WriteManifest(t, img2, "2.0.2", "ec2")
	_, err = runAMI(t, "ami", "upload", "--image", img2, "--bucket", "pith-amis", "--endpoint-url", e.URL, "--poll-interval", "1us")
	if err == nil || !strings.Contains(err.Error(), "bucket pith-amis") {
		t.Fatalf("--endpoint-url for S3: %v", err)
	}
}

// TestAMIUploadArm64: an arm64 ec2 image's manifest makes an arm64 AMI
// booting UEFI, without --boot-mode, named apart from the amd64 one.
func TestAMIUploadArm64(t *testing.T) {
	amitest.AWSEnv(t, true)
	s := amitest.NewS3(t, "pith-amis")
	e := amitest.NewEC2(t)
	amitest.Link(e, s)
	img := amitest.GPTImage(t, 12<<20, true, true)
	amitest.WriteManifestArch(t, img, "2.1.0", "ec2", "arm64")
	_, sum, err := manifest.HashFile(img)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runAMI(t, "ami", "upload", "--image", img, "--bucket", "pith-amis", "--region", "eu-west-3",
		"--s3-endpoint-url", s.URL, "--ec2-endpoint-url", e.URL, "--part-size", "5242880", "--poll-interval", "1us")
	if err != nil {
		t.Fatalf("pith ami upload: %v\n%s", err, out)
	}
	name := "pith-2.1.0-ec2-arm64-" + sum[:12]
	reg := e.Calls("RegisterImage")
	if len(reg) != 1 || reg[0].Form.Get("Architecture") != "arm64" || reg[0].Form.Get("BootMode") != "uefi" || reg[0].Form.Get("Name") != name {
		t.Fatalf("RegisterImage %+v\n%s", reg, out)
	}
	if !strings.Contains(out, "registered eu-west-3 ami-") || !strings.Contains(out, name) {
		t.Errorf("output lacks the registered arm64 AMI %s:\n%s", name, out)
	}
}

func TestAMIUploadErrors(t *testing.T) {
	img := amitest.GPTImage(t, 8<<20, true, true)
	amitest.WriteManifest(t, img, "2.0.1", "qemu")
	armImg := amitest.GPTImage(t, 8<<20, true, true)
	amitest.WriteManifestArch(t, armImg, "2.0.1", "ec2", "arm64")
	riscImg := amitest.GPTImage(t, 8<<20, true, true)
	amitest.WriteManifestArch(t, riscImg, "2.0.1", "ec2", "riscv64")
	for _, tc := range []struct {
		name  string
		creds bool
		args  []string
		err   string
	}{
		{"no image", true, []string{"--bucket", "b"}, "no --image"},
		{"no credentials", false, []string{"--image", img, "--bucket", "b"}, "no usable AWS credentials"},
		{"qemu image", true, []string{"--image", img, "--bucket", "b"}, `built for platform "qemu"`},
		{"bad manifest path", true, []string{"--image", img, "--bucket", "b", "--manifest", img + ".nope"}, "reading the build manifest"},
		{"unknown arch", true, []string{"--image", riscImg, "--bucket", "b"}, `architecture "riscv64" (from the build manifest)`},
		{"arm64 legacy-bios", true, []string{"--image", armImg, "--bucket", "b", "--boot-mode", "legacy-bios"}, "arm64 AMIs boot UEFI only"},
		{"arch against the manifest", true, []string{"--image", armImg, "--bucket", "b", "--arch", "amd64"}, "--arch amd64, but the manifest says"},
		{"small parts", true, []string{"--image", img, "--bucket", "b", "--name", "x-1", "--manifest", "", "--part-size", "1000"}, "at least 5 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			amitest.AWSEnv(t, tc.creds)
			// Endpoints that refuse connections: nothing may be sent.
			args := append([]string{"ami", "upload", "--endpoint-url", "http://127.0.0.1:1"}, tc.args...)
			_, err := runAMI(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestAMIUploadProfile: with no AWS_* keys, credentials and region come from
// the shared config files through AWS_PROFILE, as the AWS CLI takes them,
// and the upload without a terminal reports its progress in tenths.
func TestAMIUploadProfile(t *testing.T) {
	amitest.AWSEnv(t, false)
	os.Unsetenv("AWS_REGION")
	cfg, creds := os.Getenv("AWS_CONFIG_FILE"), os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if err := os.WriteFile(cfg, []byte("[default]\nregion = us-east-1\n\n[profile release]\nregion = eu-north-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n\n[release]\naws_access_key_id = AKIDRELEASEPROFILE\naws_secret_access_key = r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_PROFILE", "release")
	s := amitest.NewS3(t, "pith-amis")
	e := amitest.NewEC2(t)
	amitest.Link(e, s)
	img := amitest.GPTImage(t, 11<<20, true, true)
	amitest.WriteManifest(t, img, "2.0.3", "ec2")
	out, err := runAMI(t, "ami", "upload", "--image", img, "--bucket", "pith-amis",
		"--s3-endpoint-url", s.URL, "--ec2-endpoint-url", e.URL, "--part-size", "5242880", "--poll-interval", "1us")
	if err != nil {
		t.Fatalf("pith ami upload: %v\n%s", err, out)
	}
	calls := e.Calls("RegisterImage")
	if len(calls) != 1 || calls[0].Region != "eu-north-1" || calls[0].AccessKey != "AKIDRELEASEPROFILE" {
		t.Fatalf("RegisterImage signed as %+v, want the release profile's key and region", calls)
	}
	if !strings.Contains(out, "registered eu-north-1 ami-") {
		t.Errorf("output lacks the profile's region:\n%s", out)
	}
	for _, want := range []string{": 10% (", ": 50% (", ": 100% (11 of 11 MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("upload progress lacks %q:\n%s", want, out)
		}
	}
}
