package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"slices"
	"testing"

	"github.com/pith-os/pith/channels"
)

// TestAgentShowsSecurityUpgrades: the security upgrades a release's signed
// manifest names are in the status (pithctl update status) once the node
// sees the release.
func TestAgentShowsSecurityUpgrades(t *testing.T) {
	cs := newChannelServer(t)
	cs.publish(t, "1.0.0", 1)
	want := []string{"libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2 (security: bookworm-security)"}
	src := func(name, file string, b []byte) channels.PayloadSource {
		return channels.PayloadSource{Name: name, File: file, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
	}
	if _, err := channels.Publish(cs.dir, channels.Release{Channel: "stable", Version: "1.1.0", Platform: "linux/amd64", SecurityUpgrades: want,
		Payloads: []channels.PayloadSource{src("usr", "usr", data(5, 1<<20)), src("kernel", "vmlinuz", data(6, 1<<10)), src("initrd", "initrd", data(7, 1<<10))},
	}, []ed25519.PrivateKey{cs.key}, nil); err != nil {
		t.Fatal(err)
	}
	a := cs.agent(t, t.TempDir(), "m1", "1.0.0", newFakeSlots(t, "a"), &fakeReboot{}, nil, StrategyOff)
	if err := a.CheckOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := a.Status()
	if st.Available != "1.1.0" || !slices.Equal(st.SecurityUpgrades, want) {
		t.Errorf("status: available %q, security upgrades %q; want 1.1.0, %q", st.Available, st.SecurityUpgrades, want)
	}
}
