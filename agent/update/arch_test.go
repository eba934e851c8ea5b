package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pith-os/pith/channels"
)

// A node takes releases of its own architecture only: from its
// architecture's place in the repository (amd64 at the root, arm64 under
// arm64/), and a manifest of another architecture served where its own
// should be is refused, with a message naming both, before any payload is
// fetched or a slot touched.
func TestAgentArchitecture(t *testing.T) {
	tests := []struct {
		name      string
		node      string            // the node's platform
		published map[string]string // repository arch dir -> platform signed into its manifest
		want      string            // release applied, or "" when refused
		err       string
	}{
		{name: "amd64 node, amd64 release", node: "linux/amd64", published: map[string]string{"amd64": "linux/amd64"}, want: "1.1.0"},
		{name: "arm64 node reads arm64/", node: "linux/arm64", published: map[string]string{"amd64": "linux/amd64", "arm64": "linux/arm64"}, want: "1.1.0"},
		{name: "amd64 node beside an arm64 release", node: "linux/amd64", published: map[string]string{"amd64": "linux/amd64", "arm64": "linux/arm64"}, want: "1.1.0"},
		{name: "arm64 release at amd64's place", node: "linux/amd64", published: map[string]string{"amd64": "linux/arm64"},
			err: "update: refused: channel stable at SERVER/: release for another platform: release 1.1.0 is for linux/arm64, this node is linux/amd64: publish this architecture's release there (pith release of an image built with --arch amd64)"},
		{name: "amd64 release at arm64's place", node: "linux/arm64", published: map[string]string{"arm64": "linux/amd64"},
			err: "update: refused: channel stable at SERVER/arm64/: release for another platform: release 1.1.0 is for linux/amd64, this node is linux/arm64: publish this architecture's release there (pith release of an image built with --arch arm64)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := newChannelServer(t)
			for dir, platform := range tt.published {
				usr := data(int64(len(dir)), 1<<20)
				src := func(name, file string, b []byte) channels.PayloadSource {
					return channels.PayloadSource{Name: name, File: file, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
				}
				_, err := channels.Publish(channels.ArchDir(cs.dir, dir), channels.Release{Channel: "stable", Version: "1.1.0", Platform: platform,
					Payloads: []channels.PayloadSource{src("usr", "usr", usr), src("kernel", "vmlinuz", data(2, 100<<10)), src("initrd", "initrd", data(3, 100<<10))},
				}, []ed25519.PrivateKey{cs.key}, nil)
				if err != nil {
					t.Fatal(err)
				}
			}
			slots := newFakeSlots(t, "a")
			rb := &fakeReboot{}
			a := cs.agent(t, t.TempDir(), "m1", "1.0.0", slots, rb, nil, StrategyOff)
			a.cfg.Platform = tt.node
			err := a.CheckOnce(context.Background())
			if tt.err != "" {
				want := strings.ReplaceAll(tt.err, "SERVER", cs.url)
				if err == nil || err.Error() != want || !errors.Is(err, channels.ErrWrongPlatform) {
					t.Fatalf("CheckOnce: %v\nwant %s", err, want)
				}
				if ev := slots.events(); len(ev) != 0 || a.Status().Available != "" {
					t.Fatalf("refused release touched the slots (%v) or shows as available (%q)", ev, a.Status().Available)
				}
				for _, p := range cs.requested() {
					if strings.Contains(p, "/1.1.0/") {
						t.Fatalf("fetched %s of a refused release", p)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("CheckOnce: %v", err)
			}
			if got := a.Status().Available; got != tt.want {
				t.Fatalf("available %q, want %q", got, tt.want)
			}
			if len(slots.events()) == 0 {
				t.Fatal("release of the node's architecture was not written")
			}
			arm := strings.HasSuffix(tt.node, "arm64")
			for _, p := range cs.requested() {
				if strings.HasPrefix(p, "/arm64/") != arm {
					t.Fatalf("%s node fetched %s", tt.node, p)
				}
			}
		})
	}
}
