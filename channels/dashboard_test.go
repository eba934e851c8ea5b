package channels

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestRenderDashboard renders both templates without a browser: the
// template is parsed on first use now, so a broken dashboard.html fails
// here instead of at every program's init.
func TestRenderDashboard(t *testing.T) {
	v := &FleetView{Generated: time.Unix(1767225600, 0).UTC(), Machines: 1}
	for _, tc := range []struct {
		name     string
		bodyOnly bool
		want     string
	}{
		{"page", false, "<html"},
		{"body", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := renderDashboard(&b, v, tc.bodyOnly); err != nil {
				t.Fatal(err)
			}
			if b.Len() == 0 || !strings.Contains(strings.ToLower(b.String()), tc.want) {
				t.Errorf("%s: %d bytes, want %q in:\n%.300s", tc.name, b.Len(), tc.want, b.String())
			}
			if tc.bodyOnly && strings.Contains(strings.ToLower(b.String()), "<html") {
				t.Errorf("body only, yet a whole page:\n%.300s", b.String())
			}
		})
	}
}
