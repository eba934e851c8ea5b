package firstboot

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig/apply"
	"github.com/pith-os/pith/cloudconfig/apply/applytest"
)

// What `pithd firstboot --now` does with pithd.service after applying,
// and the line it prints for it: restart when the user-data changed
// pithd's settings, start otherwise, nothing with --no-restart, after a
// rejected user-data, or while the node still waits for its user-data.
func TestNowStartsAgent(t *testing.T) {
	const (
		plain    = "#cloud-config\nhostname: n1\n"
		settings = "#cloud-config\nhostname: n1\ncoreos:\n  etcd2:\n    name: n1\n"
		started  = "pithd.service: started if it was not running (its settings are unchanged)\n"
	)
	for _, tc := range []struct {
		name, cmdline, userData string
		noRestart, fails        bool
		calls                   []string // pithd.service's
		last                    string   // the output's last line(s)
	}{
		{"settings unchanged", "pith.platform=qemu", plain, false, false, []string{"start pithd.service"}, started},
		{"settings changed", "pith.platform=qemu", settings, false, false, []string{"restart pithd.service"},
			"pithd.service: restarted (its settings changed; a KV that already has data keeps its cluster membership)\n"},
		{"no restart", "pith.platform=qemu", settings, true, false, nil, "  wrote " + apply.AgentDropIn + "\n"},
		{"rejected", "pith.platform=qemu", "#cloud-config\nhostname: [n1\n", false, true, nil,
			"changed: nothing (the node already is as the user-data says)\n"},
		{"waiting for vagrant", "pith.platform=vagrant", "", false, false, nil, "  wrote " + apply.WaitDropIn + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := applytest.NewRoot(t)
			file := ""
			if tc.userData != "" {
				file = filepath.Join(t.TempDir(), "user-data")
				writeTestFile(t, file, tc.userData)
			}
			rec := &applytest.Recorder{}
			n := &now{ds: bootConfig(root, tc.cmdline, file), close: func() {},
				ap: &apply.Applier{Root: root, Accounts: &apply.Shadow{Root: root}, Units: rec, Host: rec}}
			var out bytes.Buffer
			err := n.run(context.Background(), tc.noRestart, &out)
			if (err != nil) != tc.fails {
				t.Fatalf("error %v, want failure %v\n%s", err, tc.fails, out.String())
			}
			calls := slices.DeleteFunc(slices.Clone(rec.Calls), func(c string) bool { return !strings.HasSuffix(c, " "+apply.AgentUnit) })
			if !slices.Equal(calls, tc.calls) {
				t.Errorf("pithd.service calls %q (all %q), want %q", calls, rec.Calls, tc.calls)
			}
			if o := out.String(); !strings.HasSuffix(o, tc.last) {
				t.Errorf("output:\n%s\nwant it to end in:\n%s", o, tc.last)
			}
		})
	}
}
