package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pith-os/pith/vm/walkthrough"
)

// Journals of the walkthrough's slow steps, so a run that took long says
// which link of the chain took the time (raft's election and the new
// leader's start, the engine's placements, failed heartbeats, the unit's
// start; an update's catch-up, health wait and lock release).

// raftNoise leaves out raft's per-attempt complaints about the machine
// that is gone (one every backoff).
const raftNoise = ` | grep -v -e 'failed to heartbeat to' -e 'failed to appendEntries to' -e 'failed to contact'`

// demoFailoverJournal logs what pithd and mongo@1 wrote on the machines
// that stayed up, from just before the switch-off on.
func demoFailoverJournal(ctx context.Context, t *testing.T, d *walkthrough.Demo, fo walkthrough.FailoverResult) {
	since := fo.Killed.Add(-5 * time.Second).Unix()
	for i := range 3 {
		if i == fo.From {
			continue
		}
		out, err := d.Exec(ctx, i, fmt.Sprintf("sudo journalctl --no-pager -o short-precise --since @%d -u pithd.service -u mongo@1.service%s | head -n 80", since, raftNoise))
		t.Logf("journal of %s from the switch-off of %s at %s (err %v):\n%s", d.NodeName(i), d.NodeName(fo.From), fo.Killed.UTC().Format("15:04:05.000"), err, out)
	}
}

// demoUpdateJournal logs each node's pithd lines about the update and the
// scheduler since its boot into the new release.
func demoUpdateJournal(ctx context.Context, t *testing.T, d *walkthrough.Demo, up walkthrough.UpdateResult) {
	for i, nu := range up.Nodes {
		out, err := d.Exec(ctx, i, "sudo journalctl --no-pager -o short-precise -b -u pithd.service"+raftNoise+" | grep -i -e update -e schedule -e leading -e 'reboot lock' | head -n 40")
		t.Logf("journal of %s since its boot into %s (back at %s, err %v):\n%s", d.NodeName(i), d.Next, nu.Back.UTC().Format("15:04:05.000"), err, out)
	}
}
