package ami

import (
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"bytes"
	"context"
	"github.com/pith-os/pith/image/ami/amitest"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/manifest"
)

func TestPutImageMultipart(t *testing.T) {
	amitest.AWSEnv(t, true)
	s := amitest.NewS3(t, "pith-amis")
	c := testClients(t, s.URL, "")
	ctx := context.Background()
	img := amitest.GPTImage(t, 12<<20, true, true)
	size, sum, err := manifest.HashFile(img)
	if err != nil {
		t.Fatal(err)
	}
	const key = "pith-import/test.raw"

	if same, err := objectMatches(ctx, c.S3, "pith-amis", key, size, sum); err != nil || same {
		t.Fatalf("before upload: matches=%v err=%v", same, err)
	}
	var bars bytes.Buffer
	if err := putImage(ctx, c.S3, "pith-amis", key, img, sum, 5<<20, &bars, nil); err != nil {
		t.Fatal(err)
	}
	// 12 MiB in 5 MiB parts: a multipart upload of three parts.
	var creates, parts, completes int
	for _, r := range s.Requests() {
		switch {
		case strings.HasPrefix(r, "POST ") && strings.Contains(r, "uploads"):
			creates++
		case strings.HasPrefix(r, "PUT ") && strings.Contains(r, "partNumber="):
			parts++
		case strings.HasPrefix(r, "POST ") && strings.Contains(r, "uploadId="):
			completes++
		}
	}
	if creates != 1 || parts != 3 || completes != 1 {
		t.Fatalf("multipart requests: %d create, %d parts, %d complete; want 1, 3, 1\n%s", creates, parts, completes, strings.Join(s.Requests(), "\n"))
	}
	got, meta := s.Object(t, "pith-amis", key)
	if !bytes.Equal(got, amitest.MustRead(t, img)) {
		t.Fatalf("uploaded object (%d bytes) differs from the image (%d bytes)", len(got), size)
	}
	// gofakes3 keeps user metadata under its header name.
	if meta["X-Amz-Meta-Pith-Sha256"] != sum {
		t.Fatalf("object metadata %v lacks %s=%s", meta, shaMeta, sum)
	}
	if !strings.Contains(bars.String(), "100%") {
		t.Fatalf("progress bar never reached 100%%: %q", bars.String())
	}

	// The finished object is recognised; a different checksum or size is not.
	for _, tc := range []struct {
		size int64
		sum  string
		want bool
	}{{size, sum, true}, {size, strings.Repeat("0", 64), false}, {size - 512, sum, false}} {
		same, err := objectMatches(ctx, c.S3, "pith-amis", key, tc.size, tc.sum)
		if err != nil || same != tc.want {
			t.Errorf("objectMatches(%d, %.8s) = %v, %v; want %v", tc.size, tc.sum, same, err, tc.want)
		}
	}

	if err := deleteObject(ctx, c.S3, "pith-amis", key); err != nil {
		t.Fatal(err)
	}
	if ks := s.Keys(t, "pith-amis"); len(ks) != 0 {
		t.Fatalf("objects left after delete: %v", ks)
	}
}

func TestProgressCountsEachByteOnce(t *testing.T) {
	img := amitest.GPTImage(t, 8<<20, true, true)
	f := amitest.MustOpen(t, img)
	var tenths []int
	var lastDone int64
	p := &progressReader{f: f, size: 8 << 20, partSize: 3 << 20, seen: map[int64]int64{},
		tenth: func(n int, done int64) { tenths = append(tenths, n); lastDone = done }}
	buf := make([]byte, 1<<20)
	// Part 1 read twice (signing, then sending), part 0 once, part 2 in a
	// short tail: 8 MiB counted, not more.
	for _, off := range []int64{3 << 20, 4 << 20, 5 << 20, 3 << 20, 4 << 20, 5 << 20, 0, 1 << 20, 2 << 20, 6 << 20, 7 << 20} {
		if _, err := p.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if p.Done() != 8<<20 {
		t.Fatalf("progress %d, want %d", p.Done(), 8<<20)
	}
	// Without bars, each tenth is reported once, in order, up to 100%.
	if len(tenths) != 10 || tenths[0] != 1 || tenths[9] != 10 || lastDone != 8<<20 {
		t.Fatalf("tenths reported %v (last at %d bytes), want 1..10 once each ending at %d", tenths, lastDone, 8<<20)
	}
	for i := 1; i < len(tenths); i++ {
		if tenths[i] != tenths[i-1]+1 {
			t.Fatalf("tenths out of order: %v", tenths)
		}
	}
}

func TestCheckBucket(t *testing.T) {
	amitest.AWSEnv(t, true)
	s := amitest.NewS3(t, "pith-amis")
	c := testClients(t, s.URL, "")
	for _, tc := range []struct{ bucket, err string }{
		{"pith-amis", ""},
		{"pith-missing", "bucket pith-missing does not exist"},
		{amitest.OtherRegionBucket, "is in region eu-west-1, not this client's region: pass --region eu-west-1"},
		{amitest.OtherRegionBucket400, "is in region ap-southeast-2, not this client's region: pass --region ap-southeast-2"},
	} {
		err := checkBucket(context.Background(), c.S3, tc.bucket)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("checkBucket(%s) = %v, want %q", tc.bucket, err, tc.err)
		}
	}
	// Uploading straight into the other region's bucket says the same.
	img := amitest.GPTImage(t, 8<<20, true, true)
	err := putImage(context.Background(), c.S3, amitest.OtherRegionBucket, "k", img, "x", 5<<20, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "eu-west-1") {
		t.Fatalf("upload to a bucket in another region: %v", err)
	}
}

// An interrupted upload leaves no unfinished multipart upload behind.
func TestPutImageInterrupted(t *testing.T) {
	amitest.AWSEnv(t, true)
	s := amitest.NewS3(t, "pith-amis")
	c := testClients(t, s.URL, "")
	img := amitest.GPTImage(t, 12<<20, true, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.SetOnRequest(func(r *http.Request) {
		if r.URL.Query().Get("partNumber") != "" {
			cancel()
		}
	})
	err := putImage(ctx, c.S3, "pith-amis", "k.raw", img, "x", 5<<20, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("interrupted upload: %v", err)
	}
	s.SetOnRequest(nil)
	l, err := c.S3.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String("pith-amis")})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Uploads) != 0 {
		t.Fatalf("%d unfinished multipart uploads left", len(l.Uploads))
	}
	if countPrefix(s.Requests(), "DELETE /pith-amis/k.raw?uploadId=") == 0 {
		t.Fatalf("no AbortMultipartUpload:\n%s", strings.Join(s.Requests(), "\n"))
	}
	if ks := s.Keys(t, "pith-amis"); len(ks) != 0 {
		t.Fatalf("objects: %v", ks)
	}
}
