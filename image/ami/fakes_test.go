package ami

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// awsEnv points the AWS SDK's default chain at test credentials and away
// from the machine's ~/.aws and from the instance metadata service (which
// would be traffic to 169.254.169.254).
func awsEnv(t *testing.T, withCreds bool) {
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

// fakeS3 is gofakes3's in-memory S3 server on 127.0.0.1. Requests for the
// bucket named otherRegionBucket are answered the way S3 answers for a
// bucket in another region than the request's (301 with
// x-amz-bucket-region, PermanentRedirect in the body).
type fakeS3 struct {
	URL     string
	backend *s3mem.Backend

	mu   sync.Mutex
	reqs []string // "METHOD /path?query"
}

const otherRegionBucket = "pith-in-eu"

func newFakeS3(t *testing.T, buckets ...string) *fakeS3 {
	t.Helper()
	f := &fakeS3{backend: s3mem.New()}
	h := gofakes3.New(f.backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		f.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/"+otherRegionBucket) {
			w.Header().Set("X-Amz-Bucket-Region", "eu-west-1")
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusMovedPermanently)
			if r.Method != http.MethodHead {
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.</Message><Bucket>%s</Bucket><Endpoint>%s.s3.eu-west-1.amazonaws.com</Endpoint></Error>`, otherRegionBucket, otherRegionBucket)
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

func (f *fakeS3) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// keys lists the bucket's objects.
func (f *fakeS3) keys(t *testing.T, bucket string) []string {
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

func (f *fakeS3) object(t *testing.T, bucket, key string) ([]byte, map[string]string) {
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

// fakeEC2 answers EC2's Query API (form-encoded Action=... requests) with
// the XML of the 2016-11-15 API version, keeping just enough state (import
// tasks, images per region) for the calls pith ami makes.
type fakeEC2 struct {
	URL string

	mu     sync.Mutex
	reqs   []ec2Req
	fail   map[string]apiErr // Action -> error answered instead
	script []taskStep        // states a new import task goes through, one per Describe
	tasks  map[string]*fakeTask
	images []*fakeImage
	n      int
	// objectExists tells whether the import's S3 object exists when
	// ImportSnapshot is called (the real service fails the task if not).
	objectExists func(bucket, key string) bool
	// pendingPolls is how many DescribeImages by id an image stays pending.
	pendingPolls int
}

type ec2Req struct {
	Action, Region string
	Form           url.Values
}

type apiErr struct {
	Status        int
	Code, Message string
}

type taskStep struct{ Status, Progress, Message string }

type fakeTask struct {
	ID, Bucket, Key string
	polls           int
	script          []taskStep
	cancelled       bool
	objectMissing   bool
}

type fakeImage struct {
	ID, Name, Region, State, SnapshotID string
	Tags                                map[string]string
	Public                              bool
	polls                               int
}

var credRegion = regexp.MustCompile(`Credential=[^/]+/\d+/([^/]+)/ec2/`)

func newFakeEC2(t *testing.T) *fakeEC2 {
	t.Helper()
	f := &fakeEC2{fail: map[string]apiErr{}, tasks: map[string]*fakeTask{}, pendingPolls: 1,
		script: []taskStep{{"active", "0", "pending"}, {"active", "37", "converting"}, {"active", "88", "validated"}, {"completed", "", ""}}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fakeEC2) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	region := ""
	if m := credRegion.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		region = m[1]
	}
	action := r.PostForm.Get("Action")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, ec2Req{action, region, r.PostForm})
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
func (f *fakeEC2) answer(action, region string, v url.Values) (string, string) {
	f.n++
	switch action {
	case "ImportSnapshot":
		t := &fakeTask{ID: fmt.Sprintf("import-snap-%017d", f.n), Bucket: v.Get("DiskContainer.UserBucket.S3Bucket"),
			Key: v.Get("DiskContainer.UserBucket.S3Key"), script: f.script}
		if f.objectExists != nil && !f.objectExists(t.Bucket, t.Key) {
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
		st := t.script[min(t.polls, len(t.script)-1)]
		t.polls++
		if t.objectMissing {
			st = taskStep{"deleted", "", "ClientError: Unable to access the S3 object"}
		}
		if t.cancelled {
			st = taskStep{"deleted", "", "User initiated task cancelation"}
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
		im := &fakeImage{ID: fmt.Sprintf("ami-%017d", f.n), Name: v.Get("Name"), Region: region, State: "pending",
			SnapshotID: v.Get("BlockDeviceMapping.1.Ebs.SnapshotId"), Tags: formTags(v, "TagSpecification.1.Tag")}
		f.images = append(f.images, im)
		return "<imageId>" + im.ID + "</imageId>", ""
	case "CopyImage":
		var src *fakeImage
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
		im := &fakeImage{ID: fmt.Sprintf("ami-%017d", f.n), Name: v.Get("Name"), Region: region, State: "pending", Tags: map[string]string{}}
		if v.Get("CopyImageTags") == "true" {
			for k, val := range src.Tags {
				im.Tags[k] = val
			}
		}
		f.images = append(f.images, im)
		return "<imageId>" + im.ID + "</imageId>", ""
	case "DescribeImages":
		var out []*fakeImage
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
				if im.polls > f.pendingPolls {
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

// calls returns the requests made for action.
func (f *fakeEC2) calls(action string) []ec2Req {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ec2Req
	for _, r := range f.reqs {
		if r.Action == action {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeEC2) actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.reqs {
		out = append(out, r.Action)
	}
	return out
}

func (f *fakeEC2) setFail(action string, e apiErr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[action] = e
}

func (f *fakeEC2) image(id string) *fakeImage {
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

// testClients builds clients for the fakes from the default chain.
func testClients(t *testing.T, s3url, ec2url string) *Clients {
	t.Helper()
	c, err := NewClients(context.Background(), "", Endpoints{S3: s3url, EC2: ec2url})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var _ = bytes.Equal

func mustOpen(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
