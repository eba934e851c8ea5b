package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/internal/chromium"
	"github.com/pith-os/pith/vm/walkthrough"
)

// TestDemo's checks of the phased rollouts (issue 20): step 6's first wave
// and the broken release whose rollout halts itself.

// demoCheckFirstWave: the rollout's first share admitted exactly one node,
// which rebooted first; the others checked in, reported why they were held
// back, and updated only after the share was raised.
func demoCheckFirstWave(t *testing.T, d *walkthrough.Demo, up walkthrough.UpdateResult) {
	t.Helper()
	t.Logf("MEASURE first wave: %g%% admitted %s of %d", up.Percent, d.NodeName(up.First), len(up.Nodes))
	for i, id := range d.MachineIDs {
		if admitted := channels.Admitted(id, d.Next, up.Percent); admitted != (i == up.First) {
			t.Errorf("%s (place %.2f) admitted=%v at %g%%, want only %s", d.NodeName(i), channels.Bucket(id, d.Next), admitted, up.Percent, d.NodeName(up.First))
		}
	}
	if len(up.Order) == 0 || up.Order[0] != up.First {
		t.Errorf("nodes rebooted in order %v, want the first wave's %s first", up.Order, d.NodeName(up.First))
		return
	}
	for i, why := range up.HeldBack {
		want := "held back: rollout of " + d.Next + " at "
		if i == up.First && why != "" || i != up.First && !strings.HasPrefix(why, want) {
			t.Errorf("%s reported %q while the first wave ran, want %q for the nodes not admitted", d.NodeName(i), why, want+"...")
		}
	}
	// Only the first node had been let in when the rest were still held
	// back: it was back on the release before anyone else went down.
	for _, i := range up.Order[1:] {
		if first := up.Nodes[up.First]; !up.Nodes[i].Rebooting.After(first.Back) {
			t.Errorf("%s rebooted at %s, before the first wave's %s was back (%s)", d.NodeName(i), up.Nodes[i].Rebooting, d.NodeName(up.First), first.Back)
		}
	}
	if !strings.Contains(up.Rollout, "rollout of "+d.Next+" active") {
		t.Errorf("pith release rollout status after the first wave:\n%s", up.Rollout)
	}
}

// demoCheckHalt: the broken release rolled back on the one node admitted,
// the channel server halted its rollout with the reason, the other nodes
// never downloaded it (their status and the server's install count), a
// raise is refused, and the dashboard in headless Chromium shows it all.
func demoCheckHalt(t *testing.T, d *walkthrough.Demo, hr walkthrough.HaltResult) {
	t.Helper()
	t.Logf("MEASURE broken %s: rollout halted and every node held back %s after it was published", hr.Version, hr.Took.Round(1e9))
	firstID := d.MachineIDs[hr.First]
	if !strings.Contains(hr.Rollback, "did not come up") {
		t.Errorf("%s's rollback of %s: %q, want the slot that did not come up", d.NodeName(hr.First), hr.Version, hr.Rollback)
	}
	if !strings.Contains(hr.Halt, firstID) || !strings.Contains(hr.Halt, "rolled-back") {
		t.Errorf("halt reason %q does not name %s and its rollback", hr.Halt, firstID)
	}
	for i, st := range hr.Status {
		if st.Running != d.Next {
			t.Errorf("%s runs %q after the broken release, want %s", d.NodeName(i), st.Running, d.Next)
		}
		rep := hr.Reported[i]
		if i == hr.First {
			continue
		}
		for _, e := range st.History {
			if e.Version == hr.Version {
				t.Errorf("%s has %s in its history (%s: %s): it was never to install it", d.NodeName(i), hr.Version, e.Kind, e.Detail)
			}
		}
		if st.Pending != nil || st.Progress != nil && strings.Contains(st.Progress.Payload, hr.Version) {
			t.Errorf("%s: pending %+v progress %+v after the halt", d.NodeName(i), st.Pending, st.Progress)
		}
		if rep.Event != channels.EventChecked || rep.Version != hr.Version || !strings.Contains(rep.Reason, "held back: rollout of "+hr.Version+" halted") {
			t.Errorf("%s's last report to the channel server: %+v, want checked %s, held back by the halt", d.NodeName(i), rep, hr.Version)
		}
	}
	var ro *channels.RolloutAdmin
	for _, c := range hr.Fleet.Channels {
		if c.Channel == "stable" {
			ro = c.Rollout
		}
	}
	if ro == nil || ro.Version != hr.Version || ro.State != channels.RolloutHalted || ro.Installed != 1 || ro.Failures != 1 {
		t.Errorf("the server's rollout of %s: %+v, want halted with 1 machine that installed it and 1 failure", hr.Version, ro)
	}
	if hr.RaiseErr == nil || !strings.Contains(hr.Raise, "halted") {
		t.Errorf("raising the halted rollout: %v\n%s", hr.RaiseErr, hr.Raise)
	}
	if !strings.Contains(hr.Rollout, "rollout of "+hr.Version+" halted") {
		t.Errorf("pith release rollout status:\n%s", hr.Rollout)
	}
	if sh := hr.Shown[d.NodeName(hr.First)]; len(sh) == 0 || !strings.Contains(sh[0], "Rollback:  "+hr.Version) {
		t.Errorf("pithctl update status on %s does not show the rollback of %s: %q", d.NodeName(hr.First), hr.Version, sh)
	}

	bin, err := chromium.Find()
	if err != nil {
		t.Errorf("no chromium for the dashboard check (hack/install-deps.sh installs it): %v", err)
		return
	}
	dom, err := chromium.Run(context.Background(), bin, t.TempDir(), d.DashboardURL(), "--dump-dom", "--virtual-time-budget=8000")
	if err != nil {
		t.Error(err)
	}
	want := append([]string{d.Next, hr.Version, `id="rollout-state-stable">halted<`, "did not come up"}, d.MachineIDs...)
	for _, w := range want {
		if !strings.Contains(dom, w) {
			t.Errorf("the dashboard (headless Chromium's DOM) lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("dashboard DOM:\n%s", dom)
	}
	if dir := os.Getenv("PITH_DASHBOARD_SCREENSHOT_DIR"); dir != "" {
		if _, err := chromium.Run(context.Background(), bin, t.TempDir(), d.DashboardURL(), "--screenshot="+filepath.Join(dir, "demo-dashboard.png"), "--window-size=1100,1300", "--hide-scrollbars"); err != nil {
			t.Error(err)
		}
	}
}
