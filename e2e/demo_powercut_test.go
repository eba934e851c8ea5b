package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/vm/walkthrough"
)

// demoPowerCut is issue 14's power cut on TestDemo's cluster (after the
// walkthrough, all members up): clients write and read through all three
// members, every QEMU is SIGKILLed at once mid-load, the nodes boot again
// from the same disks, and then every acknowledged write must be there,
// the history linearizable and the cluster serving.
func demoPowerCut(t *testing.T, d *walkthrough.Demo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	res, err := d.PowerCut(ctx, walkthrough.PowerCutOptions{N: 1, Seed: 1})
	if err != nil {
		t.Fatalf("power cut: %v", err)
	}
	checkPowerCut(t, "power cut", res)
}

// checkPowerCut logs what one cut checked (a MEASURE line) and fails the
// test for any promise it broke.
func checkPowerCut(t *testing.T, name string, res walkthrough.PowerCutResult) {
	t.Helper()
	t.Logf("MEASURE %s: %d/%d acknowledged writes found, %s, %d stale plain reads, serving again %s after the cut, %s in all; answers %v",
		name, res.Acked-len(res.Lost), res.Acked, res.Check, len(res.Stale), res.Serving.Round(time.Second), res.Took.Round(time.Second), res.Outcomes)
	if res.Acked == 0 || res.Check.Checked == 0 {
		t.Errorf("%s: the load recorded nothing to check (%d acknowledged, %d operations)", name, res.Acked, res.Check.Checked)
	}
	if len(res.Lost) > 0 {
		t.Errorf("%s: %d of %d acknowledged writes lost, e.g. %v", name, len(res.Lost), res.Acked, res.Lost[:min(5, len(res.Lost))])
	}
	if !res.Check.Linearizable {
		t.Errorf("%s: history not linearizable: %s", name, res.Check)
	}
	if len(res.Stale) > 0 {
		t.Errorf("%s: %d plain reads behind their client's session, e.g.\n%s", name, len(res.Stale), strings.Join(res.Stale[:min(5, len(res.Stale))], "\n"))
	}
}
