package ami

import (
	"context"
	"testing"
)

// testClients builds clients for the fakes from the default chain.
func testClients(t *testing.T, s3url, ec2url string) *Clients {
	t.Helper()
	c, err := NewClients(context.Background(), "", Endpoints{S3: s3url, EC2: ec2url})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
