package apply

import (
	"fmt"
	"testing"
	"time"
)

// TestBootsStopped: lines are appended oldest first, stamped, one line
// each, and only the last MaxBootsStopped are kept.
func TestBootsStopped(t *testing.T) {
	root := t.TempDir()
	if got, err := ReadBootsStopped(root); err != nil || got != nil {
		t.Fatalf("no file: %q, %v; want none", got, err)
	}
	when := time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)
	for i := range MaxBootsStopped + 2 {
		if err := RecordBootStopped(root, when.Add(time.Duration(i)*time.Minute), fmt.Sprintf("stop %d\nsecond line", i)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadBootsStopped(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != MaxBootsStopped {
		t.Fatalf("%d lines, want %d: %q", len(got), MaxBootsStopped, got)
	}
	if got[0] != "2026-12-04T05:02:00Z stop 2 second line" || got[len(got)-1] != "2026-12-04T05:21:00Z stop 21 second line" {
		t.Errorf("first and last lines %q, %q", got[0], got[len(got)-1])
	}
}
