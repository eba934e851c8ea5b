package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pith-os/pith/node"
)

// TestUpdateStatusSecurity: pithctl update status names the security
// upgrades of the available release (issue 22), one line each, and none
// when no release is available.
func TestUpdateStatusSecurity(t *testing.T) {
	for _, tc := range []struct {
		name      string
		available string
		security  []string
		want      string
	}{
		{"two fixes", "1.1.0", []string{"libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2", "linux-image-6.1.0-57-cloud-amd64 6.1.176-1 -> 6.1.192-3"},
			"Available: 1.1.0\nSecurity:  libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2\nSecurity:  linux-image-6.1.0-57-cloud-amd64 6.1.176-1 -> 6.1.192-3\n"},
		{"no fixes", "1.1.0", nil, "Available: 1.1.0\n"},
		{"nothing available", "", []string{"libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2"}, "Channel:   stable\n"},
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(node.UpdateStatus{Phase: node.PhaseIdle, Running: "1.0.0", Channel: "stable", Available: tc.available, SecurityUpgrades: tc.security})
		}))
		out, err := runCtl(t, "update", "status", "--endpoint", ts.URL)
		ts.Close()
		if err != nil || !strings.Contains(out, tc.want) || strings.Count(out, "Security:") != len(tc.security) && tc.available != "" ||
			tc.available == "" && strings.Contains(out, "Security:") {
			t.Errorf("%s: status %q %v, want %q", tc.name, out, err, tc.want)
		}
	}
}
