// Package amitest runs local stand-ins for S3 (gofakes3, in memory) and
// EC2 (the Query API subset pith ami uses, answering with the documented
// 2016-11-15 XML) on 127.0.0.1, and builds small GPT images, for the tests
// of image/ami and of pith ami upload.
package amitest

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pith-os/pith/image/manifest"
)

// AWSEnv points the AWS SDK's default chain at test credentials and away
// from the machine's ~/.aws and from the instance metadata service (which
// would be traffic to 169.254.169.254).
func AWSEnv(t testing.TB, withCreds bool) {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_EC2"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "us-east-1")
	if withCreds {
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIDPITHTEST")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "pith-test-secret")
	} else {
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		os.Unsetenv("AWS_ACCESS_KEY_ID")
		os.Unsetenv("AWS_SECRET_ACCESS_KEY")
	}
}

// MustRead reads a file or fails the test.
func MustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// MustOpen opens a file for the test's duration.
func MustOpen(t testing.TB, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// GPTImage makes a raw GPT disk of size bytes with sgdisk: partition 1 an
// ESP, 2 a BIOS boot partition (each when asked), 3 a Linux partition filled
// with seeded random bytes so uploads of it can be compared byte for byte.
func GPTImage(t testing.TB, size int64, esp, bios bool) string {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatalf("sgdisk (gdisk package) is needed to build test images: %v", err)
	}
	p := filepath.Join(t.TempDir(), "pith.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	args := []string{"-o"}
	if esp {
		args = append(args, "-n", "1:2048:+1M", "-t", "1:EF00")
	}
	if bios {
		args = append(args, "-n", "2:0:+1M", "-t", "2:EF02")
	}
	args = append(args, "-n", "3:0:0", "-t", "3:8300", p)
	if out, err := exec.Command("sgdisk", args...).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk %v: %v\n%s", args, err, out)
	}
	// Random content inside partition 3 (it starts at or after 3 MiB).
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(uint64(size), 7))
	// At most 64 MiB of it: large images stay sparse beyond that.
	buf := make([]byte, min(size-(4<<20)-(1<<20), 64<<20))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	if _, err := f.WriteAt(buf, 4<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

// Link makes e's ImportSnapshot fail its task, as EC2 does, when the S3
// object is missing from s.
func Link(e *EC2, s *S3) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ObjectExists = func(bucket, key string) bool {
		_, ok := s.Size(bucket, key)
		return ok
	}
}

// WriteManifest writes pith.manifest.json beside img as pith build does for
// it: version, platform, kernel and the raw artifact's size and SHA-256. It
// names no architecture, as manifests of amd64 images did before arm64.
func WriteManifest(t testing.TB, img, version, platform string) string {
	t.Helper()
	return WriteManifestArch(t, img, version, platform, "")
}

// WriteManifestArch is WriteManifest for an image of arch (the manifest's
// arch field; "" leaves it out).
func WriteManifestArch(t testing.TB, img, version, platform, arch string) string {
	t.Helper()
	size, sum, err := manifest.HashFile(img)
	if err != nil {
		t.Fatal(err)
	}
	kernelArch := arch
	if kernelArch == "" {
		kernelArch = "amd64"
	}
	m := &manifest.Manifest{Schema: manifest.SchemaVersion, Version: version, Platform: platform, Arch: arch,
		KernelVersion: "6.1.0-28-cloud-" + kernelArch,
		Artifacts:     []manifest.Artifact{{Name: filepath.Base(img), Format: "raw", Size: size, SHA256: sum}}}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(filepath.Dir(img), manifest.FileName)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
