package ami

import (
	"context"
	"github.com/pith-os/pith/image/ami/amitest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// wantForm checks the given Query API parameters of a request.
func wantForm(t *testing.T, v url.Values, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got := v.Get(k); got != w {
			t.Errorf("%s %s = %q, want %q", v.Get("Action"), k, got, w)
		}
	}
}

const vmimportMsg = "The service role vmimport provided does not exist or does not have sufficient permissions"

func TestImportSnapshot(t *testing.T) {
	amitest.AWSEnv(t, true)
	for _, tc := range []struct {
		name string
		fail *amitest.APIError
		role string
		err  string
	}{
		{name: "ok"},
		{name: "own role", role: "pith-import"},
		{name: "vmimport missing", fail: amitest.Err(400, "InvalidParameter", vmimportMsg), err: "the vmimport service role is missing or cannot read s3://pith-amis"},
		{name: "concurrent imports", fail: amitest.Err(400, "ResourceLimitExceeded", "You have reached the maximum number of concurrent snapshot import tasks."), err: "AWS quota reached (ResourceLimitExceeded"},
		{name: "bad credentials", fail: amitest.Err(401, "AuthFailure", "AWS was not able to validate the provided access credentials"), err: "AWS rejected the credentials (AuthFailure"},
		{name: "no permission", fail: amitest.Err(403, "UnauthorizedOperation", "You are not authorized to perform this operation."), err: "access denied (UnauthorizedOperation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := amitest.NewEC2(t)
			if tc.fail != nil {
				e.SetFail("ImportSnapshot", *tc.fail)
			}
			c := testClients(t, "", e.URL)
			id, err := importSnapshot(context.Background(), c.EC2, "pith-amis", "pith-import/abc.raw", "Pith 1.2.0 (ec2, x86_64)", tc.role)
			calls := e.Calls("ImportSnapshot")
			if len(calls) != 1 {
				t.Fatalf("%d ImportSnapshot calls, want 1 (errors are not retried): %v", len(calls), e.Actions())
			}
			wantForm(t, calls[0].Form, map[string]string{
				"Version":                           "2016-11-15",
				"DiskContainer.Format":              "RAW",
				"DiskContainer.UserBucket.S3Bucket": "pith-amis",
				"DiskContainer.UserBucket.S3Key":    "pith-import/abc.raw",
				"Description":                       "Pith 1.2.0 (ec2, x86_64)",
				"RoleName":                          tc.role,
			})
			if calls[0].Region != "us-east-1" {
				t.Errorf("signed for region %q", calls[0].Region)
			}
			if tc.err == "" {
				if err != nil || !strings.HasPrefix(id, "import-snap-") {
					t.Fatalf("importSnapshot = %q, %v", id, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tc.err)
			}
		})
	}
}

func TestWaitImport(t *testing.T) {
	amitest.AWSEnv(t, true)
	for _, tc := range []struct {
		name   string
		script []amitest.TaskStep
		fail   *amitest.APIError
		polls  int
		err    string
	}{
		{name: "completes", script: []amitest.TaskStep{amitest.Step("active", "0", "pending"), amitest.Step("active", "37", "converting"), amitest.Step("active", "88", "validated"), amitest.Step("completed", "", "")}, polls: 4},
		{name: "completes at once", script: []amitest.TaskStep{amitest.Step("completed", "", "completed")}, polls: 1},
		{name: "disk rejected", script: []amitest.TaskStep{amitest.Step("active", "12", "validating"), amitest.Step("deleting", "", "ClientError: Disk validation failed [Unsupported specified file format]")}, polls: 2,
			err: "import task import-snap-00000000000000001 failed (deleting): ClientError: Disk validation failed [Unsupported specified file format] (the object is not a valid RAW disk"},
		{name: "role lost mid-import", script: []amitest.TaskStep{amitest.Step("deleted", "", "ClientError: "+vmimportMsg)}, polls: 1, err: "create the vmimport service role"},
		{name: "deleted without message", script: []amitest.TaskStep{amitest.Step("deleted", "", "")}, polls: 1, err: "failed (deleted): no status message"},
		{name: "auth failure while polling", fail: amitest.Err(401, "AuthFailure", "AWS was not able to validate the provided access credentials"), polls: 1, err: "DescribeImportSnapshotTasks import-snap-00000000000000001: AWS rejected the credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := amitest.NewEC2(t)
			if tc.script != nil {
				e.Script = tc.script
			}
			c := testClients(t, "", e.URL)
			ctx := context.Background()
			id, err := importSnapshot(ctx, c.EC2, "b", "k", "d", "")
			if err != nil {
				t.Fatal(err)
			}
			if tc.fail != nil {
				e.SetFail("DescribeImportSnapshotTasks", *tc.fail)
			}
			var logs []string
			snap, err := waitImport(ctx, c.EC2, id, time.Microsecond, nil, func(f string, a ...any) { logs = append(logs, f) })
			polls := e.Calls("DescribeImportSnapshotTasks")
			if len(polls) != tc.polls {
				t.Errorf("%d polls, want %d", len(polls), tc.polls)
			}
			for _, p := range polls {
				wantForm(t, p.Form, map[string]string{"ImportTaskId.1": id})
			}
			if tc.err == "" {
				if err != nil || snap != "snap-"+strings.TrimPrefix(id, "import-snap-") {
					t.Fatalf("waitImport = %q, %v", snap, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tc.err)
			}
		})
	}
}

func TestWaitImportCancelled(t *testing.T) {
	amitest.AWSEnv(t, true)
	e := amitest.NewEC2(t)
	e.Script = []amitest.TaskStep{amitest.Step("active", "5", "pending")} // never finishes
	c := testClients(t, "", e.URL)
	id, err := importSnapshot(context.Background(), c.EC2, "b", "k", "d", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := waitImport(ctx, c.EC2, id, time.Millisecond, nil, nil)
		done <- err
	}()
	for len(e.Calls("DescribeImportSnapshotTasks")) < 3 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "import task "+id+" cancelled") {
		t.Fatalf("error %v", err)
	}
	cc := e.Calls("CancelImportTask")
	if len(cc) != 1 {
		t.Fatalf("%d CancelImportTask calls", len(cc))
	}
	wantForm(t, cc[0].Form, map[string]string{"ImportTaskId": id})
}

func TestRegisterImage(t *testing.T) {
	amitest.AWSEnv(t, true)
	for _, tc := range []struct {
		name, mode string
		arch, want string // RegisterParams.Arch, the Architecture sent
		fail       *amitest.APIError
		err        string
	}{
		{name: "uefi-preferred", mode: "uefi-preferred", want: "x86_64"},
		{name: "legacy-bios", mode: "legacy-bios", arch: "x86_64", want: "x86_64"},
		{name: "arm64", mode: "uefi", arch: "arm64", want: "arm64"},
		{name: "ami quota", mode: "uefi", want: "x86_64", fail: amitest.Err(400, "ResourceLimitExceeded", "You have reached your quota of 50000 AMIs in this Region."), err: "AWS quota reached (ResourceLimitExceeded: You have reached your quota of 50000 AMIs in this Region.)"},
		{name: "name taken", mode: "uefi", want: "x86_64", fail: amitest.Err(400, "InvalidAMIName.Duplicate", "AMI name pith-1 is already in use by AMI ami-0123"), err: "RegisterImage pith-1: InvalidAMIName.Duplicate: AMI name pith-1 is already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := amitest.NewEC2(t)
			if tc.fail != nil {
				e.SetFail("RegisterImage", *tc.fail)
			}
			c := testClients(t, "", e.URL)
			id, err := registerImage(context.Background(), c.EC2, RegisterParams{Name: "pith-1", Description: "Pith 1", SnapshotID: "snap-0abc", BootMode: tc.mode, Arch: tc.arch,
				Tags: map[string]string{TagSHA256: "abc", TagVersion: "1.2.0"}})
			calls := e.Calls("RegisterImage")
			if len(calls) != 1 {
				t.Fatalf("%d RegisterImage calls", len(calls))
			}
			wantForm(t, calls[0].Form, map[string]string{
				"Name": "pith-1", "Description": "Pith 1", "Architecture": tc.want, "RootDeviceName": "/dev/xvda",
				"VirtualizationType": "hvm", "EnaSupport": "true", "SriovNetSupport": "simple", "BootMode": tc.mode,
				"BlockDeviceMapping.1.DeviceName":              "/dev/xvda",
				"BlockDeviceMapping.1.Ebs.SnapshotId":          "snap-0abc",
				"BlockDeviceMapping.1.Ebs.VolumeType":          "gp3",
				"BlockDeviceMapping.1.Ebs.DeleteOnTermination": "true",
				"TagSpecification.1.ResourceType":              "image",
				"TagSpecification.1.Tag.1.Key":                 TagSHA256,
				"TagSpecification.1.Tag.1.Value":               "abc",
				"TagSpecification.1.Tag.2.Key":                 TagVersion,
			})
			if tc.err == "" {
				if err != nil || !strings.HasPrefix(id, "ami-") {
					t.Fatalf("registerImage = %q, %v", id, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestCopyAndPublic(t *testing.T) {
	amitest.AWSEnv(t, true)
	e := amitest.NewEC2(t)
	c := testClients(t, "", e.URL)
	ctx := context.Background()
	id, err := registerImage(ctx, c.EC2, RegisterParams{Name: "pith-2", Description: "d", SnapshotID: "snap-1", BootMode: "uefi"})
	if err != nil {
		t.Fatal(err)
	}
	// Copying a pending AMI is refused by EC2; waitImage comes first.
	if err := waitImage(ctx, c.EC2, id, "us-east-1", time.Microsecond, nil); err != nil {
		t.Fatal(err)
	}
	cp, reused, err := copyImage(ctx, c.EC2In("eu-central-1"), id, "us-east-1", "eu-central-1", "pith-2", "d")
	if err != nil || reused {
		t.Fatalf("copyImage = %s, %v, %v", cp, reused, err)
	}
	calls := e.Calls("CopyImage")
	if len(calls) != 1 || calls[0].Region != "eu-central-1" {
		t.Fatalf("CopyImage calls %+v: want one, signed for the destination eu-central-1", calls)
	}
	wantForm(t, calls[0].Form, map[string]string{"SourceImageId": id, "SourceRegion": "us-east-1", "Name": "pith-2", "CopyImageTags": "true"})
	if len(calls[0].Form.Get("ClientToken")) != 32 {
		t.Errorf("ClientToken %q", calls[0].Form.Get("ClientToken"))
	}
	// A second copy finds the first by name.
	cp2, reused, err := copyImage(ctx, c.EC2In("eu-central-1"), id, "us-east-1", "eu-central-1", "pith-2", "d")
	if err != nil || !reused || cp2 != cp || len(e.Calls("CopyImage")) != 1 {
		t.Fatalf("second copyImage = %s, %v, %v (%d CopyImage calls)", cp2, reused, err, len(e.Calls("CopyImage")))
	}
	if err := makePublic(ctx, c.EC2, id, "us-east-1"); err != nil {
		t.Fatal(err)
	}
	m := e.Calls("ModifyImageAttribute")
	wantForm(t, m[0].Form, map[string]string{"ImageId": id, "LaunchPermission.Add.1.Group": "all"})
	if !e.ImageByID(id).Public {
		t.Fatal("image not public")
	}
	e.SetFail("ModifyImageAttribute", *amitest.Err(400, "OperationNotPermitted", "Image block public access is enabled for this account"))
	err = makePublic(ctx, c.EC2, id, "us-east-1")
	if err == nil || !strings.Contains(err.Error(), "disable-image-block-public-access --region us-east-1") {
		t.Fatalf("block public access error: %v", err)
	}
}
