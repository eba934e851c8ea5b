// Package amitest runs local stand-ins for S3 (gofakes3, in memory) and
// EC2 (the Query API subset pith ami uses, answering with the documented
// 2016-11-15 XML) on 127.0.0.1, and builds small GPT images, for the tests
// of image/ami and of pith ami upload.
package amitest

import (
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

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

// EC2 answers EC2's Query API (form-encoded Action=... requests) with
// the XML of the 2016-11-15 API version, keeping just enough state (import
// tasks, images per region) for the calls pith ami makes.
type EC2 struct {
	URL string

	mu     sync.Mutex
	reqs   []Request
	fail   map[string]APIError // Action -> error answered instead
	Script []TaskStep          // states a new import task goes through, one per Describe
	tasks  map[string]*task
	images []*Image
	n      int
	// ObjectExists tells whether the import's S3 object exists when
	// ImportSnapshot is called (the real service fails the task if not).
	ObjectExists func(bucket, key string) bool
	// PendingPolls is how many DescribeImages by id an image stays pending.
	PendingPolls int
}

type Request struct {
	Action, Region string
	AccessKey      string // the signing credential's access key id
	Form           url.Values
}

type APIError struct {
	Status        int
	Code, Message string
}

type TaskStep struct{ Status, Progress, Message string }

type task struct {
	ID, Bucket, Key string
	polls           int
	Script          []TaskStep
	cancelled       bool
	objectMissing   bool
}

type Image struct {
	ID, Name, Region, State, SnapshotID string
	Tags                                map[string]string
	Public                              bool
	polls                               int
}

var credRegion = regexp.MustCompile(`Credential=([^/]+)/\d+/([^/]+)/ec2/`)

// NewEC2 starts the server; new import tasks follow Script.
func NewEC2(t testing.TB) *EC2 {
	t.Helper()
	f := &EC2{fail: map[string]APIError{}, tasks: map[string]*task{}, PendingPolls: 1,
		Script: []TaskStep{Step("active", "0", "pending"), Step("active", "37", "converting"), Step("active", "88", "validated"), Step("completed", "", "")}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *EC2) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	region, key := "", ""
	if m := credRegion.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		key, region = m[1], m[2]
	}
	action := r.PostForm.Get("Action")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, Request{Action: action, Region: region, AccessKey: key, Form: r.PostForm})
	if e, ok := f.fail[action]; ok {
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		w.WriteHeader(e.Status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestID></Response>`, e.Code, html.EscapeString(e.Message))
		return
	}
	body, err := f.answer(action, region, r.PostForm)
	if err != "" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>%s</Message></Error></Errors><RequestID>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestID></Response>`, html.EscapeString(err))
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
<requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
%s
</%sResponse>`, action, body, action)
}

func x(s string) string { return html.EscapeString(s) }

// answer builds the response body for action; a non-empty second result is
// an InvalidParameterValue error.
func (f *EC2) answer(action, region string, v url.Values) (string, string) {
	f.n++
	switch action {
	case "ImportSnapshot":
		t := &task{ID: fmt.Sprintf("import-snap-%017d", f.n), Bucket: v.Get("DiskContainer.UserBucket.S3Bucket"),
			Key: v.Get("DiskContainer.UserBucket.S3Key"), Script: f.Script}
		if f.ObjectExists != nil && !f.ObjectExists(t.Bucket, t.Key) {
			t.objectMissing = true
		}
		f.tasks[t.ID] = t
		return fmt.Sprintf(`<description>%s</description><importTaskId>%s</importTaskId>
<snapshotTaskDetail><diskImageSize>0.0</diskImageSize><progress>0</progress><status>active</status><statusMessage>pending</statusMessage>
<userBucket><s3Bucket>%s</s3Bucket><s3Key>%s</s3Key></userBucket></snapshotTaskDetail>`, x(v.Get("Description")), t.ID, x(t.Bucket), x(t.Key)), ""
	case "DescribeImportSnapshotTasks":
		t := f.tasks[v.Get("ImportTaskId.1")]
		if t == nil {
			return "", "The import task ID '" + v.Get("ImportTaskId.1") + "' does not exist"
		}
		st := t.Script[min(t.polls, len(t.Script)-1)]
		t.polls++
		if t.objectMissing {
			st = TaskStep{"deleted", "", "ClientError: Unable to access the S3 object"}
		}
		if t.cancelled {
			st = TaskStep{"deleted", "", "User initiated task cancelation"}
		}
		snap := ""
		if st.Status == "completed" {
			snap = "<snapshotId>snap-" + strings.TrimPrefix(t.ID, "import-snap-") + "</snapshotId>"
		}
		prog := ""
		if st.Progress != "" {
			prog = "<progress>" + st.Progress + "</progress>"
		}
		msg := ""
		if st.Message != "" {
			msg = "<statusMessage>" + x(st.Message) + "</statusMessage>"
		}
		return fmt.Sprintf(`<importSnapshotTaskSet><item><importTaskId>%s</importTaskId><snapshotTaskDetail>
<diskImageSize>12582912.0</diskImageSize><format>RAW</format>%s%s<status>%s</status>%s
<userBucket><s3Bucket>%s</s3Bucket><s3Key>%s</s3Key></userBucket></snapshotTaskDetail></item></importSnapshotTaskSet>`,
			t.ID, prog, snap, st.Status, msg, x(t.Bucket), x(t.Key)), ""
	case "CancelImportTask":
		t := f.tasks[v.Get("ImportTaskId")]
		if t == nil {
			return "", "no such task"
		}
		t.cancelled = true
		return fmt.Sprintf(`<importTaskId>%s</importTaskId><previousState>active</previousState><state>deleting</state>`, t.ID), ""
	case "RegisterImage":
		for _, im := range f.images {
			if im.Region == region && im.Name == v.Get("Name") {
				return "", "AMI name " + im.Name + " is already in use by AMI " + im.ID
			}
		}
		im := &Image{ID: fmt.Sprintf("ami-%017d", f.n), Name: v.Get("Name"), Region: region, State: "pending",
			SnapshotID: v.Get("BlockDeviceMapping.1.Ebs.SnapshotId"), Tags: formTags(v, "TagSpecification.1.Tag")}
		f.images = append(f.images, im)
		return "<imageId>" + im.ID + "</imageId>", ""
	case "CopyImage":
		var src *Image
		for _, im := range f.images {
			if im.ID == v.Get("SourceImageId") && im.Region == v.Get("SourceRegion") {
				src = im
			}
		}
		if src == nil {
			return "", "source AMI " + v.Get("SourceImageId") + " not found in " + v.Get("SourceRegion")
		}
		if src.State != "available" {
			return "", "source AMI is not available"
		}
		im := &Image{ID: fmt.Sprintf("ami-%017d", f.n), Name: v.Get("Name"), Region: region, State: "pending", Tags: map[string]string{}}
		if v.Get("CopyImageTags") == "true" {
			for k, val := range src.Tags {
				im.Tags[k] = val
			}
		}
		f.images = append(f.images, im)
		return "<imageId>" + im.ID + "</imageId>", ""
	case "DescribeImages":
		var out []*Image
		for _, im := range f.images {
			if im.Region != region {
				continue
			}
			if id := v.Get("ImageId.1"); id != "" && im.ID != id {
				continue
			}
			if v.Get("Filter.1.Name") == "name" && v.Get("Filter.1.Value.1") != im.Name {
				continue
			}
			if v.Get("ImageId.1") != "" && im.State == "pending" {
				im.polls++
				if im.polls > f.PendingPolls {
					im.State = "available"
				}
			}
			out = append(out, im)
		}
		var b strings.Builder
		b.WriteString("<imagesSet>")
		for _, im := range out {
			fmt.Fprintf(&b, `<item><imageId>%s</imageId><imageLocation>123456789012/%s</imageLocation><imageState>%s</imageState>
<imageOwnerId>123456789012</imageOwnerId><isPublic>%t</isPublic><architecture>x86_64</architecture><imageType>machine</imageType>
<name>%s</name><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName><virtualizationType>hvm</virtualizationType><tagSet>`,
				im.ID, x(im.Name), im.State, im.Public, x(im.Name))
			keys := make([]string, 0, len(im.Tags))
			for k := range im.Tags {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, "<item><key>%s</key><value>%s</value></item>", x(k), x(im.Tags[k]))
			}
			b.WriteString("</tagSet></item>")
		}
		b.WriteString("</imagesSet>")
		return b.String(), ""
	case "ModifyImageAttribute":
		for _, im := range f.images {
			if im.ID == v.Get("ImageId") && im.Region == region {
				if im.State != "available" {
					return "", "image is not available"
				}
				if v.Get("LaunchPermission.Add.1.Group") == "all" {
					im.Public = true
				}
				return "<return>true</return>", ""
			}
		}
		return "", "no such image"
	}
	return "", "fake EC2 does not implement " + action
}

func formTags(v url.Values, prefix string) map[string]string {
	tags := map[string]string{}
	for i := 1; ; i++ {
		k := v.Get(fmt.Sprintf("%s.%d.Key", prefix, i))
		if k == "" {
			return tags
		}
		tags[k] = v.Get(fmt.Sprintf("%s.%d.Value", prefix, i))
	}
}

// Calls returns the requests made for action.
func (f *EC2) Calls(action string) []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Request
	for _, r := range f.reqs {
		if r.Action == action {
			out = append(out, r)
		}
	}
	return out
}

// Actions lists the actions requested, in order.
func (f *EC2) Actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.reqs {
		out = append(out, r.Action)
	}
	return out
}

// SetFail makes every later call of action answer e.
func (f *EC2) SetFail(action string, e APIError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[action] = e
}

// SetImageState changes an image's state (e.g. to "failed").
func (f *EC2) SetImageState(id, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, im := range f.images {
		if im.ID == id {
			im.State = state
		}
	}
}

// ImageByID returns a copy of the image with that id, or nil.
func (f *EC2) ImageByID(id string) *Image {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, im := range f.images {
		if im.ID == id {
			c := *im
			return &c
		}
	}
	return nil
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

// Err is an EC2 error response: HTTP status, error code, message.
func Err(status int, code, message string) *APIError {
	return &APIError{Status: status, Code: code, Message: message}
}

// Step is one state of an import task as DescribeImportSnapshotTasks
// reports it.
func Step(status, progress, message string) TaskStep {
	return TaskStep{Status: status, Progress: progress, Message: message}
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
// it: version, platform, kernel and the raw artifact's size and SHA-256.
func WriteManifest(t testing.TB, img, version, platform string) string {
	t.Helper()
	size, sum, err := manifest.HashFile(img)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{Schema: manifest.SchemaVersion, Version: version, Platform: platform,
		KernelVersion: "6.1.0-28-cloud-amd64",
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
