package channels

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pith-os/pith/internal/chromium"
)

// browser finds Chromium (internal/chromium.Find), or skips the test.
func browser(t *testing.T) string {
	p, err := chromium.Find()
	if err != nil {
		t.Skip("no chromium: run hack/install-deps.sh (or set PITH_CHROMIUM) for the dashboard browser test")
	}
	return p
}

// runChromium runs headless Chromium on url with a fresh profile and extra
// flags, and returns its stdout.
func runChromium(t *testing.T, bin, url string, extra ...string) string {
	t.Helper()
	out, err := chromium.Run(context.Background(), bin, t.TempDir(), url, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDashboardInChromium: the page shows the machines, their versions and
// a halted rollout with its reason, and updates itself: a machine that
// reports after the page loaded appears without a reload.
func TestDashboardInChromium(t *testing.T) {
	bin := browser(t)
	tr := newTestRepo(t, "1.1.0", 16<<10)
	s, err := NewServer(tr.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	if s.Fleet, err = OpenFleet(dir); err != nil {
		t.Fatal(err)
	}
	f := s.Fleet
	ingest := func(m *testMachine, ev, running, version, reason string) {
		t.Helper()
		if err := f.Ingest(m.report(t, ev, running, version, reason)); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteRollout(dir, &Rollout{Channel: "stable", Version: "1.2.0", Percent: 100, State: RolloutActive,
		Halt: HaltRule{First: 5, MaxFirst: 0, MaxPercent: 5}, Since: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	n1, n2, n3 := newTestMachine("node-1"), newTestMachine("node-2"), newTestMachine("node-3")
	n3.group = "db"
	for _, m := range []*testMachine{n1, n2, n3} {
		ingest(m, EventGood, "1.1.0", "1.1.0", "")
	}
	f.Sample()
	ingest(n1, EventWritten, "1.1.0", "1.2.0", "")
	ingest(n1, EventRolledBack, "1.1.0", "1.2.0", "slot a did not come up")
	ingest(n2, EventChecked, "1.1.0", "1.2.0", "held back: rollout of 1.2.0 halted")
	f.Sample()

	var once sync.Once
	late := newTestMachine("late-node")
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeHTTP(w, r)
		// Once the page is out, another machine reports: the page must
		// show it by itself.
		if r.URL.Path == "/" && r.URL.RawQuery == "" {
			once.Do(func() { ingest(late, EventChecked, "1.0.0", "", "") })
		}
	}))
	defer ts.Close()

	// The page polls every 3 s; the virtual time budget lets Chromium run
	// its timers (and waits for the fetches they make).
	dom := runChromium(t, bin, ts.URL+"/", "--dump-dom", "--virtual-time-budget=8000")
	for _, want := range []string{
		"node-1", "node-2", "node-3", "1.1.0", "1.2.0",
		`id="rollout-state-stable">halted<`, "slot a did not come up", "db",
		"<svg", "<polyline",
		"late-node", // arrived after the page loaded
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("dashboard DOM lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	shot := filepath.Join(os.Getenv("PITH_DASHBOARD_SCREENSHOT_DIR"), "dashboard.png")
	if os.Getenv("PITH_DASHBOARD_SCREENSHOT_DIR") == "" {
		shot = filepath.Join(t.TempDir(), "dashboard.png")
	}
	runChromium(t, bin, ts.URL+"/", "--screenshot="+shot, "--window-size=1100,1300", "--hide-scrollbars")
	if st, err := os.Stat(shot); err != nil || st.Size() < 10<<10 {
		t.Fatalf("screenshot %s: %v (%v bytes)", shot, err, st)
	}
}
