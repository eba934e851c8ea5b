//go:build soak

package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pith-os/pith/vm/walkthrough"
)

// TestSoak is `make soak` (outside the suite: build tag soak): one
// walkthrough cluster (discovery, three nodes) cut SOAK_CUTS times
// (default 5) at random moments of the same load, each cut checked as
// TestDemo's one.
func TestSoak(t *testing.T) {
	cuts := 5
	if s := os.Getenv("SOAK_CUTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SOAK_CUTS=%q: want a number of cuts >= 1", s)
		}
		cuts = n
	}
	d := newDemo(t, "pith-soak-")
	if _, err := d.Discovery(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Boot(); err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano() % 1_000_000
	t.Logf("soak: %d cuts, seed %d", cuts, seed)
	for n := 1; n <= cuts; n++ {
		res, err := d.PowerCut(t.Context(), walkthrough.PowerCutOptions{N: n, Seed: seed + int64(n), Jitter: 20 * time.Second})
		if err != nil {
			t.Fatalf("cut %d: %v", n, err)
		}
		checkPowerCut(t, "cut "+strconv.Itoa(n), res)
	}
}
