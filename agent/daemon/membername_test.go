package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMemberName: the hostname default (--new-member-name) names a member
// without KV state only; one with state keeps its recorded name, or, with
// none recorded (an older release's data dir), the --name it ran under.
// An explicit --name always wins, with a note when it renames.
func TestMemberName(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		configured, newName, stored string
		hasState                    bool
		want                        string
		note                        bool
	}{
		{"new member takes the hostname default", "mid", "host", "", false, "host", false},
		{"old release's member keeps its machine-ID name", "mid", "host", "", true, "mid", true},
		{"recorded name is kept over the default", "mid", "host", "host-old", true, "host-old", true},
		{"recorded name equal to the default", "mid", "host", "host", true, "host", false},
		{"recorded name without state (failed first start)", "mid", "host2", "host", false, "host", true},
		{"explicit name, new member", "n1", "", "", false, "n1", false},
		{"explicit name, same as recorded", "n1", "", "n1", true, "n1", false},
		{"explicit name renames", "n2", "", "n1", true, "n2", true},
		{"no default: --name over an old data dir", "mid", "", "", true, "mid", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, note := memberName(tc.configured, tc.newName, tc.stored, tc.hasState)
			if got != tc.want || (note != "") != tc.note {
				t.Errorf("memberName(%q, %q, %q, %v) = %q, note %q; want %q, note %v", tc.configured, tc.newName, tc.stored, tc.hasState, got, note, tc.want, tc.note)
			}
		})
	}
}

// TestResolveMemberNameRecords: the decided name is recorded in the data
// dir and wins over a changed default on the next start.
func TestResolveMemberNameRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kv")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := KVConfig{Name: "mid", NewMemberName: "host1", DataDir: dir}
	if err := resolveMemberName(&f, log); err != nil || f.Name != "host1" {
		t.Fatalf("first start: name %q, %v; want host1", f.Name, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, memberNameFile))
	if err != nil || strings.TrimSpace(string(b)) != "host1" {
		t.Fatalf("recorded %q, %v", b, err)
	}
	f = KVConfig{Name: "mid", NewMemberName: "host2", DataDir: dir}
	if err := resolveMemberName(&f, log); err != nil || f.Name != "host1" {
		t.Errorf("hostname changed: name %q, %v; want the recorded host1", f.Name, err)
	}
}
