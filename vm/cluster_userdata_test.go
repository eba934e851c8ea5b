package vm

import (
	"context"
	"strings"
	"testing"
)

// Per-node user-data must name one file per node: a short list would boot
// the last nodes without their certificates.
func TestStartClusterUserDataPerNode(t *testing.T) {
	_, err := StartCluster(context.Background(), ClusterConfig{Dir: t.TempDir(), Nodes: 3, UserData: []string{"a", "b"}})
	if err == nil || !strings.Contains(err.Error(), "2 user-data files for 3 nodes") {
		t.Fatalf("StartCluster with 2 user-data files for 3 nodes: %v", err)
	}
}
