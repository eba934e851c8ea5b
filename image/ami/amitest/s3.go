package amitest

// A fake S3: buckets in memory behind gofakes3, with a bucket in another
// region answered the two ways S3 reports a region mismatch.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3 is gofakes3's in-memory S3 server on 127.0.0.1. Requests for the
// bucket named OtherRegionBucket are answered the way S3 answers for a
// bucket in another region than the request's (301 with
// x-amz-bucket-region, PermanentRedirect in the body).
type S3 struct {
	URL     string
	backend *s3mem.Backend

	mu   sync.Mutex
	reqs []string // "METHOD /path?query"
	// OnRequest, if set, sees each request before it is served.
	OnRequest func(r *http.Request)
}

const OtherRegionBucket = "pith-in-eu"

// OtherRegionBucket400 is answered the other way S3 reports a region
// mismatch: 400 AuthorizationHeaderMalformed, with x-amz-bucket-region.
const OtherRegionBucket400 = "pith-in-ap"

// NewS3 starts the server with the given buckets.
func NewS3(t testing.TB, buckets ...string) *S3 {
	t.Helper()
	f := &S3{backend: s3mem.New()}
	h := gofakes3.New(f.backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		hook := f.OnRequest
		f.mu.Unlock()
		if hook != nil {
			hook(r)
		}
		if strings.HasPrefix(r.URL.Path, "/"+OtherRegionBucket) {
			w.Header().Set("X-Amz-Bucket-Region", "eu-west-1")
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusMovedPermanently)
			if r.Method != http.MethodHead {
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.</Message><Bucket>%s</Bucket><Endpoint>%s.s3.eu-west-1.amazonaws.com</Endpoint></Error>`, OtherRegionBucket, OtherRegionBucket)
			}
			return
		}
		if strings.HasPrefix(r.URL.Path, "/"+OtherRegionBucket400) {
			w.Header().Set("X-Amz-Bucket-Region", "ap-southeast-2")
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			if r.Method != http.MethodHead {
				fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'ap-southeast-2'</Message><Region>ap-southeast-2</Region></Error>`)
			}
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	for _, b := range buckets {
		if err := f.backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// Requests lists the requests served, as "METHOD /path?query".
func (f *S3) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// Keys lists the bucket's objects.
func (f *S3) Keys(t testing.TB, bucket string) []string {
	t.Helper()
	l, err := f.backend.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, c := range l.Contents {
		ks = append(ks, c.Key)
	}
	return ks
}

// Object returns an object's bytes and stored metadata.
func (f *S3) Object(t testing.TB, bucket, key string) ([]byte, map[string]string) {
	t.Helper()
	o, err := f.backend.GetObject(bucket, key, nil)
	if err != nil {
		t.Fatalf("GetObject %s/%s: %v", bucket, key, err)
	}
	defer o.Contents.Close()
	b, err := io.ReadAll(o.Contents)
	if err != nil {
		t.Fatal(err)
	}
	return b, o.Metadata
}

// SetOnRequest sets OnRequest safely while the server runs.
func (f *S3) SetOnRequest(h func(r *http.Request)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.OnRequest = h
}

// Size returns the size of bucket/key, false if there is no such object.
func (f *S3) Size(bucket, key string) (int64, bool) {
	o, err := f.backend.HeadObject(bucket, key)
	if err != nil {
		return 0, false
	}
	return o.Size, true
}
