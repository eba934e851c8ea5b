package ami

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// explain turns an AWS API error into one line that names the problem and
// the fix. what says which step failed ("ImportSnapshot", "upload to s3://b/k").
// Errors it does not recognise keep the service's code and message.
func explain(what, bucket string, err error) error {
	if err == nil {
		return nil
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		// S3 answers a request signed for the wrong region with 301
		// PermanentRedirect or 400 AuthorizationHeaderMalformed, and names
		// the bucket's region in a header (a HEAD has no body to say more).
		st := re.HTTPStatusCode()
		if r := re.Response.Header.Get("X-Amz-Bucket-Region"); r != "" && (st == http.StatusMovedPermanently || st == http.StatusBadRequest) {
			return fmt.Errorf("%s: bucket %s is in region %s, not this client's region: pass --region %s (ImportSnapshot needs the bucket in the import region) or use a bucket in this region", what, bucket, r, r)
		}
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return fmt.Errorf("%s: %w", what, err)
	}
	code, msg := ae.ErrorCode(), oneLine(ae.ErrorMessage())
	switch {
	case code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" && strings.Contains(msg, "region"):
		return fmt.Errorf("%s: bucket %s is in another region (%s: %s): pass the bucket's region with --region", what, bucket, code, msg)
	case code == "NoSuchBucket" || code == "NotFound" && strings.HasPrefix(what, "bucket"):
		return fmt.Errorf("%s: bucket %s does not exist: create it (aws s3 mb s3://%s) or pass another --bucket", what, bucket, bucket)
	case strings.Contains(msg, "service role vmimport") || strings.Contains(msg, "The service role"):
		return fmt.Errorf("%s: the vmimport service role is missing or cannot read s3://%s (%s): create it as README.md section \"AWS\" shows", what, bucket, msg)
	case code == "AuthFailure" || code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" || code == "ExpiredToken" || code == "RequestExpired":
		return fmt.Errorf("%s: AWS rejected the credentials (%s: %s): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, refresh an expired session (aws sso login)", what, code, msg)
	case code == "UnauthorizedOperation" || code == "AccessDenied" || code == "Forbidden":
		return fmt.Errorf("%s: access denied (%s: %s): the caller's IAM policy needs this permission (see README.md section \"AWS\")", what, code, msg)
	case strings.Contains(code, "LimitExceeded") || strings.Contains(code, "QuotaExceeded") || strings.Contains(strings.ToLower(msg), "quota"):
		return fmt.Errorf("%s: AWS quota reached (%s: %s): deregister unused AMIs and delete their snapshots, wait for running import tasks, or request an increase in Service Quotas", what, code, msg)
	}
	if msg == "" {
		return fmt.Errorf("%s: %s", what, code)
	}
	return fmt.Errorf("%s: %s: %s", what, code, msg)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
