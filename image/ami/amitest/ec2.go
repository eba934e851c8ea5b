package amitest

// A fake EC2 query API: ImportSnapshot, RegisterImage and the calls around
// them, with injectable failures and task progress.

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

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
	// Architecture and BootMode are as registered (a copy's, its source's).
	Architecture, BootMode string
	Tags                   map[string]string
	Public                 bool
	polls                  int
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
		arch, mode := v.Get("Architecture"), v.Get("BootMode")
		if arch != "x86_64" && arch != "arm64" {
			return "", "fake EC2: architecture " + arch + " is not x86_64 or arm64"
		}
		// Graviton boots UEFI only; the fake refuses the other modes for
		// arm64 whatever EC2 answers, so pith is seen never to send them.
		if arch == "arm64" && mode != "uefi" {
			return "", "fake EC2: boot mode " + mode + " for an arm64 AMI, only uefi boots on Graviton"
		}
		im := &Image{ID: fmt.Sprintf("ami-%017d", f.n), Name: v.Get("Name"), Region: region, State: "pending",
			SnapshotID: v.Get("BlockDeviceMapping.1.Ebs.SnapshotId"), Architecture: arch, BootMode: mode, Tags: formTags(v, "TagSpecification.1.Tag")}
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
		im := &Image{ID: fmt.Sprintf("ami-%017d", f.n), Name: v.Get("Name"), Region: region, State: "pending",
			Architecture: src.Architecture, BootMode: src.BootMode, Tags: map[string]string{}}
		if v.Get("CopyImageTags") == "true" {
			for k, val := range src.Tags {
				im.Tags[k] = val
			}
		}
		f.images = append(f.images, im)
		return "<imageId>" + im.ID + "</imageId>", ""
	case "DescribeImages":
		return f.describeImages(region, v), ""
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

// Err is an EC2 error response: HTTP status, error code, message.
func Err(status int, code, message string) *APIError {
	return &APIError{Status: status, Code: code, Message: message}
}

// Step is one state of an import task as DescribeImportSnapshotTasks
// reports it.
func Step(status, progress, message string) TaskStep {
	return TaskStep{Status: status, Progress: progress, Message: message}
}

// describeImages answers DescribeImages for region: by ImageId.1 or a
// name filter; a pending image asked for by ID turns available after
// PendingPolls such calls.
func (f *EC2) describeImages(region string, v url.Values) string {
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
<imageOwnerId>123456789012</imageOwnerId><isPublic>%t</isPublic><architecture>%s</architecture><imageType>machine</imageType>
<name>%s</name><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName><virtualizationType>hvm</virtualizationType><bootMode>%s</bootMode><tagSet>`,
			im.ID, x(im.Name), im.State, im.Public, x(im.Architecture), x(im.Name), x(im.BootMode))
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
	return b.String()
}
