package channels

import (
	"cmp"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FleetView is GET /v1/fleet, and what the dashboard shows.
type FleetView struct {
	Generated time.Time      `json:"generated"`
	Machines  int            `json:"machines"`
	Channels  []ChannelView  `json:"channels"`
	Failed    []FailedView   `json:"failed"`
	Last      []MachineView  `json:"last"` // each machine's last report, most recent first
	History   []Sample       `json:"history"`
	Rollouts  []RolloutAdmin `json:"rollouts"`
}

// ChannelView counts a channel's machines per version, overall and per group.
type ChannelView struct {
	Channel  string         `json:"channel"`
	Versions []VersionCount `json:"versions"`
	Groups   []GroupView    `json:"groups"`
	Rollout  *RolloutAdmin  `json:"rollout,omitempty"`
}

// GroupView is one group of a channel.
type GroupView struct {
	Group    string         `json:"group"`
	Versions []VersionCount `json:"versions"`
	Pinned   string         `json:"pinned,omitempty"`
}

// VersionCount is how many machines run a version.
type VersionCount struct {
	Version  string `json:"version"`
	Machines int    `json:"machines"`
}

// RolloutAdmin is a rollout with what an operator set.
type RolloutAdmin struct {
	Channel string `json:"channel"`
	RolloutView
	From      float64           `json:"from"`
	Over      string            `json:"over,omitempty"`
	Start     time.Time         `json:"start"`
	Pins      map[string]string `json:"pins,omitempty"`
	Barrier   string            `json:"barrier,omitempty"`
	Halt      HaltRule          `json:"halt_rule"`
	Installed int               `json:"installed"`
	Failures  int               `json:"failures"`
}

// FailedView is a machine on which a version failed.
type FailedView struct {
	Machine string    `json:"machine"`
	Channel string    `json:"channel"`
	Group   string    `json:"group"`
	Version string    `json:"version"`
	Event   string    `json:"event"`
	Reason  string    `json:"reason"`
	Time    time.Time `json:"time"`
}

// MachineView is a machine and its last report.
type MachineView struct {
	ID      string    `json:"id"`
	Group   string    `json:"group"`
	Channel string    `json:"channel"`
	Arch    string    `json:"arch"`
	Running string    `json:"running"`
	Event   string    `json:"event"`
	Version string    `json:"version,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Seen    time.Time `json:"seen"`
	// Member is the cluster member certificate the machine reports with
	// ("": its own first-use key).
	Member string `json:"member,omitempty"`
}

// View summarizes the fleet. lastN bounds the machines listed in Last (0:
// all); counts always cover every machine.
func (f *Fleet) View(lastN int) *FleetView {
	v := f.gather()
	// Sorted outside the lock: reports keep coming in meanwhile.
	slices.SortFunc(v.Failed, func(a, b FailedView) int { return b.Time.Compare(a.Time) })
	slices.SortFunc(v.Last, func(a, b MachineView) int { return cmp.Or(b.Seen.Compare(a.Seen), strings.Compare(a.ID, b.ID)) })
	if lastN > 0 && len(v.Last) > lastN {
		v.Last = v.Last[:lastN]
	}
	return v
}

// gather copies what View shows under the lock.
func (f *Fleet) gather() *FleetView {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	v := &FleetView{Generated: now.UTC(), Machines: len(f.st.Machines), Last: make([]MachineView, 0, len(f.st.Machines)),
		Channels: []ChannelView{}, Failed: []FailedView{}, Rollouts: []RolloutAdmin{}}
	type key struct{ ch, g, ver string }
	counts := map[key]int{}
	chans := map[string]bool{}
	for _, m := range f.st.Machines {
		counts[key{m.Channel, m.Group, m.Running}]++
		chans[m.Channel] = true
		for ver, fl := range m.Failed {
			v.Failed = append(v.Failed, FailedView{Machine: m.ID, Channel: m.Channel, Group: m.Group, Version: ver, Event: fl.Event, Reason: fl.Reason, Time: fl.Time})
		}
		v.Last = append(v.Last, MachineView{ID: m.ID, Group: m.Group, Channel: m.Channel, Arch: m.Arch, Running: m.Running,
			Event: m.Last.Event, Version: m.Last.Version, Reason: m.Last.Reason, Seen: m.Seen, Member: m.Member})
	}
	if ents, err := os.ReadDir(filepath.Join(f.dir, rolloutDir)); err == nil {
		for _, e := range ents {
			if c, ok := strings.CutSuffix(e.Name(), ".json"); ok && ValidChannelName(c) {
				chans[c] = true
			}
		}
	}
	for _, ch := range slices.Sorted(maps.Keys(chans)) {
		cv := ChannelView{Channel: ch, Groups: []GroupView{}}
		r := f.rollout(ch)
		if r != nil {
			ra := f.admin(r, now)
			cv.Rollout = &ra
			v.Rollouts = append(v.Rollouts, ra)
		}
		all := map[string]int{}
		groups := map[string]map[string]int{}
		for k, n := range counts {
			if k.ch != ch {
				continue
			}
			all[k.ver] += n
			if groups[k.g] == nil {
				groups[k.g] = map[string]int{}
			}
			groups[k.g][k.ver] += n
		}
		cv.Versions = versionCounts(all)
		for _, g := range slices.Sorted(maps.Keys(groups)) {
			gv := GroupView{Group: g, Versions: versionCounts(groups[g])}
			if r != nil {
				gv.Pinned = r.Pins[g]
			}
			cv.Groups = append(cv.Groups, gv)
		}
		v.Channels = append(v.Channels, cv)
	}
	v.History = slices.Clone(f.st.History)
	return v
}

func (f *Fleet) admin(r *Rollout, now time.Time) RolloutAdmin {
	ra := RolloutAdmin{Channel: r.Channel, RolloutView: f.view(r, now), From: r.From, Start: r.Start, Pins: r.Pins, Barrier: r.Barrier, Halt: r.Halt}
	if r.Over > 0 {
		ra.Over = r.Over.String()
	}
	if r.Version != "" {
		ra.Installed = len(f.installs[r.Channel+"/"+r.Version])
		for _, m := range f.st.Machines {
			if fl, ok := m.Failed[r.Version]; ok && m.Channel == r.Channel && !fl.Time.Before(r.Since) {
				ra.Failures++
			}
		}
	}
	return ra
}

func versionCounts(m map[string]int) []VersionCount {
	out := make([]VersionCount, 0, len(m))
	for ver, n := range m {
		out = append(out, VersionCount{ver, n})
	}
	slices.SortFunc(out, func(a, b VersionCount) int {
		c, err := CompareVersions(b.Version, a.Version)
		if err != nil {
			return strings.Compare(b.Version, a.Version)
		}
		return c
	})
	return out
}
