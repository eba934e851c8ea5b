package walkthrough

// Step 6's phased rollouts: the share that admits one node first, the
// channel server's fleet view, and the operator's rollout commands.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/pith-os/pith/channels"
)

// admitOne returns a rollout percentage under which exactly one of the
// machines falls for version (their stable place, channels.Bucket), and
// that machine's index: a first wave of one node. The percentage is the
// next whole number above the first machine's place when the second's is
// not below it, else the midpoint between the two.
func admitOne(ids []string, version string) (float64, int, error) {
	if len(ids) < 2 {
		return 0, 0, fmt.Errorf("a first wave of one needs at least 2 machines, have %d", len(ids))
	}
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	place := func(i int) float64 { return channels.Bucket(ids[i], version) }
	slices.SortFunc(idx, func(a, b int) int { return cmpFloat(place(a), place(b)) })
	lo, hi := place(idx[0]), place(idx[1])
	if lo == hi {
		return 0, 0, fmt.Errorf("machines %s and %s have the same place for %s: no share admits only one", ids[idx[0]], ids[idx[1]], version)
	}
	p := math.Floor(lo) + 1
	if p > hi {
		p = (lo + hi) / 2
	}
	return p, idx[0], nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// pct prints a percentage exactly (the CLI parses it back to the same float).
func pct(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) }

// DashboardURL is the channel server's fleet dashboard on this
// workstation; its JSON is DashboardURL()+"v1/fleet".
func (d *Demo) DashboardURL() string {
	if d.channel == nil {
		return ""
	}
	return "http://" + d.channel.addr + "/"
}

// Fleet reads the channel server's view of the machines that report to it.
func (d *Demo) Fleet(ctx context.Context) (channels.FleetView, error) {
	var fv channels.FleetView
	b, code, err := d.httpGet(ctx, d.DashboardURL()+"v1/fleet")
	if err != nil {
		return fv, err
	}
	if code != 200 {
		return fv, fmt.Errorf("GET /v1/fleet: %d %s", code, strings.TrimSpace(string(b)))
	}
	return fv, json.Unmarshal(b, &fv)
}

// lastReport is a machine's last report in fv.
func lastReport(fv channels.FleetView, id string) (channels.MachineView, bool) {
	for _, m := range fv.Last {
		if m.ID == id {
			return m, true
		}
	}
	return channels.MachineView{}, false
}

// channelRollout is the rollout of channel in fv (nil: none).
func channelRollout(fv channels.FleetView, channel string) *channels.RolloutAdmin {
	for _, c := range fv.Channels {
		if c.Channel == channel {
			return c.Rollout
		}
	}
	return nil
}

// fleetDir is where the channel server keeps reports and rollouts (pith
// channel serve's default for --repo d.repo).
func (d *Demo) fleetDir() string { return filepath.Join(d.repo, ".fleet") }

// rollout runs `pith release rollout ARGS...` on the stable channel and
// prints it (ARGS may start with a subcommand: status, resume...). A rollout set before its release is published uses --state
// (the version cannot be checked against the repository yet).
func (d *Demo) rolloutCmd(ctx context.Context, beforeRelease bool, args ...string) (string, error) {
	where := []string{"--repo", d.repo}
	if beforeRelease {
		where = []string{"--state", d.fleetDir()}
	}
	full := append(append([]string{"release", "rollout"}, args...), append(where, "--channel", "stable")...)
	out, err := d.runPith(ctx, full...)
	shown := out
	if err != nil {
		shown = strings.TrimSpace(out) + "\n(refused: exit status not 0)"
	}
	d.transcript("", "pith "+strings.Join(full, " "), shown)
	return out, err
}
