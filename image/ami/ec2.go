package ami

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/schollz/progressbar/v3"
)

// Tag keys Pith puts on the AMIs it registers.
const (
	TagSHA256   = "pith:sha256"
	TagVersion  = "pith:version"
	TagPlatform = "pith:platform"
	TagArch     = "pith:arch" // the image's architecture: amd64, arm64
)

// RootDevice is the AMI's root device name.
const RootDevice = "/dev/xvda"

// findImage returns the AMI named name owned by the caller, or nil.
func findImage(ctx context.Context, c *ec2.Client, name string) (*types.Image, error) {
	out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: []types.Filter{{Name: aws.String("name"), Values: []string{name}}},
	})
	if err != nil {
		return nil, explain("DescribeImages", "", err)
	}
	for i := range out.Images {
		im := &out.Images[i]
		if aws.ToString(im.Name) == name && im.State != types.ImageStateDeregistered {
			return im, nil
		}
	}
	return nil, nil
}

func tag(im *types.Image, key string) string {
	for _, t := range im.Tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// importSnapshot starts an EBS snapshot import of the RAW object bucket/key.
func importSnapshot(ctx context.Context, c *ec2.Client, bucket, key, description, role string) (string, error) {
	in := &ec2.ImportSnapshotInput{
		Description: aws.String(description),
		DiskContainer: &types.SnapshotDiskContainer{
			Description: aws.String(description),
			Format:      aws.String("RAW"),
			UserBucket:  &types.UserBucket{S3Bucket: aws.String(bucket), S3Key: aws.String(key)},
		},
	}
	if role != "" {
		in.RoleName = aws.String(role)
	}
	out, err := c.ImportSnapshot(ctx, in)
	if err != nil {
		return "", explain("ImportSnapshot", bucket, err)
	}
	if aws.ToString(out.ImportTaskId) == "" {
		return "", fmt.Errorf("ImportSnapshot returned no import task id")
	}
	return aws.ToString(out.ImportTaskId), nil
}

// waitImport polls the import task every interval until it completes (the
// snapshot id) or is deleted (its status message as the error). If ctx ends
// first, the task is cancelled so it does not keep reading the object.
func waitImport(ctx context.Context, c *ec2.Client, taskID string, interval time.Duration, bars io.Writer, logf func(string, ...any)) (string, error) {
	var bar *progressbar.ProgressBar
	if bars != nil {
		bar = progressbar.NewOptions(100,
			progressbar.OptionSetWriter(bars),
			progressbar.OptionSetDescription("import "+taskID),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(bars) }),
		)
	}
	last := ""
	for {
		out, err := c.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{taskID}})
		if err != nil {
			if ctx.Err() != nil {
				return "", cancelImport(ctx, c, taskID)
			}
			return "", explain("DescribeImportSnapshotTasks "+taskID, "", err)
		}
		if len(out.ImportSnapshotTasks) == 0 || out.ImportSnapshotTasks[0].SnapshotTaskDetail == nil {
			return "", fmt.Errorf("import task %s is not known to EC2 (DescribeImportSnapshotTasks returned nothing)", taskID)
		}
		d := out.ImportSnapshotTasks[0].SnapshotTaskDetail
		status, msg := aws.ToString(d.Status), oneLine(aws.ToString(d.StatusMessage))
		switch status {
		case "completed":
			if bar != nil {
				bar.Finish()
			}
			if aws.ToString(d.SnapshotId) == "" {
				return "", fmt.Errorf("import task %s completed without a snapshot id", taskID)
			}
			return aws.ToString(d.SnapshotId), nil
		case "deleting", "deleted":
			if msg == "" {
				msg = "no status message"
			}
			return "", fmt.Errorf("import task %s failed (%s): %s", taskID, status, importHint(msg))
		}
		line := status
		if msg != "" {
			line += ": " + msg
		}
		if p, err := strconv.Atoi(aws.ToString(d.Progress)); err == nil && bar != nil {
			bar.Describe("import " + taskID + " " + line)
			bar.Set(p)
		} else if line != last && logf != nil {
			logf("import %s: %s %s%%", taskID, line, aws.ToString(d.Progress))
		}
		last = line
		select {
		case <-ctx.Done():
			return "", cancelImport(ctx, c, taskID)
		case <-time.After(interval):
		}
	}
}

// importHint adds the fix to the status messages whose cause is known.
func importHint(msg string) string {
	switch {
	case containsAny(msg, "ClientError: Disk validation failed", "Unsupported specified file format", "Invalid Disk Image", "unsupported format"):
		return msg + " (the object is not a valid RAW disk: upload pith.img as built)"
	case containsAny(msg, "vmimport", "service role"):
		return msg + " (create the vmimport service role: README.md section \"AWS\")"
	case containsAny(msg, "Access Denied", "AccessDenied", "not able to access"):
		return msg + " (the vmimport role cannot read the bucket: check its policy)"
	}
	return msg
}

func cancelImport(ctx context.Context, c *ec2.Client, taskID string) error {
	_, err := c.CancelImportTask(context.WithoutCancel(ctx), &ec2.CancelImportTaskInput{
		ImportTaskId: aws.String(taskID), CancelReason: aws.String("pith ami upload interrupted"),
	})
	if err != nil {
		return fmt.Errorf("interrupted; cancelling import task %s failed too (%v): cancel it with aws ec2 cancel-import-task", taskID, explain("CancelImportTask", "", err))
	}
	return fmt.Errorf("interrupted (%v); import task %s cancelled", context.Cause(ctx), taskID)
}

// RegisterParams is what RegisterImage is told; Arch is EC2's name of the
// architecture (x86_64, arm64; "" = x86_64).
type RegisterParams struct {
	Name, Description, SnapshotID, BootMode, Arch string
	Tags                                          map[string]string
}

func registerImage(ctx context.Context, c *ec2.Client, p RegisterParams) (string, error) {
	arch := types.ArchitectureValues(p.Arch)
	if arch == "" {
		arch = types.ArchitectureValuesX8664
	}
	// The same network flags on both architectures: Graviton instances are
	// Nitro instances, networked by ENA.
	in := &ec2.RegisterImageInput{
		Name:               aws.String(p.Name),
		Description:        aws.String(p.Description),
		Architecture:       arch,
		RootDeviceName:     aws.String(RootDevice),
		VirtualizationType: aws.String("hvm"),
		EnaSupport:         aws.Bool(true),
		SriovNetSupport:    aws.String("simple"),
		BootMode:           types.BootModeValues(p.BootMode),
		BlockDeviceMappings: []types.BlockDeviceMapping{{
			DeviceName: aws.String(RootDevice),
			Ebs: &types.EbsBlockDevice{
				SnapshotId:          aws.String(p.SnapshotID),
				VolumeType:          types.VolumeTypeGp3,
				DeleteOnTermination: aws.Bool(true),
			},
		}},
		TagSpecifications: tagSpec(types.ResourceTypeImage, p.Tags),
	}
	out, err := c.RegisterImage(ctx, in)
	if err != nil {
		return "", explain("RegisterImage "+p.Name, "", err)
	}
	return aws.ToString(out.ImageId), nil
}

func tagSpec(rt types.ResourceType, tags map[string]string) []types.TagSpecification {
	if len(tags) == 0 {
		return nil
	}
	ts := types.TagSpecification{ResourceType: rt}
	for _, k := range sortedKeys(tags) {
		ts.Tags = append(ts.Tags, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return []types.TagSpecification{ts}
}

// waitImage polls until the AMI is available (copies and launch permissions
// need that); failed or vanished images end the wait with their reason.
func waitImage(ctx context.Context, c *ec2.Client, id, where string, interval time.Duration, logf func(string, ...any)) error {
	logged := false
	for {
		out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
		if err != nil {
			return explain("DescribeImages "+id, "", err)
		}
		if len(out.Images) == 0 {
			return fmt.Errorf("AMI %s in %s disappeared while waiting for it", id, where)
		}
		im := out.Images[0]
		switch im.State {
		case types.ImageStateAvailable:
			return nil
		case types.ImageStatePending:
		default:
			reason := ""
			if im.StateReason != nil {
				reason = ": " + oneLine(aws.ToString(im.StateReason.Message))
			}
			return fmt.Errorf("AMI %s in %s is %s%s", id, where, im.State, reason)
		}
		if !logged && logf != nil {
			logf("waiting for %s in %s to become available", id, where)
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s in %s: %w", id, where, context.Cause(ctx))
		case <-time.After(interval):
		}
	}
}

// copyImage copies the AMI into the region dst's client serves, unless an
// AMI of that name already exists there. The client token makes a retried
// call return the same copy.
func copyImage(ctx context.Context, dst *ec2.Client, srcID, srcRegion, dstRegion, name, description string) (id string, reused bool, err error) {
	if im, err := findImage(ctx, dst, name); err != nil {
		return "", false, fmt.Errorf("%s: %w", dstRegion, err)
	} else if im != nil {
		return aws.ToString(im.ImageId), true, nil
	}
	tok := sha256.Sum256([]byte(srcRegion + "/" + srcID + "/" + dstRegion + "/" + name))
	out, err := dst.CopyImage(ctx, &ec2.CopyImageInput{
		Name:          aws.String(name),
		Description:   aws.String(description),
		SourceImageId: aws.String(srcID),
		SourceRegion:  aws.String(srcRegion),
		CopyImageTags: aws.Bool(true),
		ClientToken:   aws.String(hex.EncodeToString(tok[:16])),
	})
	if err != nil {
		return "", false, explain("CopyImage to "+dstRegion, "", err)
	}
	return aws.ToString(out.ImageId), false, nil
}

// makePublic grants launch permission to everyone.
func makePublic(ctx context.Context, c *ec2.Client, id, region string) error {
	_, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
		ImageId: aws.String(id),
		LaunchPermission: &types.LaunchPermissionModifications{
			Add: []types.LaunchPermission{{Group: types.PermissionGroupAll}},
		},
	})
	if err != nil {
		e := explain(fmt.Sprintf("make %s in %s public", id, region), "", err)
		if containsAny(err.Error(), "block public access", "BlockPublicAccess") {
			return fmt.Errorf("%v (the account blocks public AMIs: aws ec2 disable-image-block-public-access --region %s)", e, region)
		}
		return e
	}
	return nil
}
