package channels

import (
	"cmp"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestBucketStableAndSpread(t *testing.T) {
	const n = 10000
	under := map[float64]int{}
	for i := range n {
		id := fmt.Sprintf("machine-%05d", i)
		b := Bucket(id, "1.2.0")
		if b != Bucket(id, "1.2.0") {
			t.Fatalf("%s: bucket differs between calls", id)
		}
		if b < 0 || b >= 100 {
			t.Fatalf("%s: bucket %v outside [0,100)", id, b)
		}
		for _, p := range []float64{1, 10, 50} {
			if b < p {
				under[p]++
			}
		}
	}
	// The share admitted tracks the percentage (binomial, 10k draws: a
	// 3-sigma band is about +-1.5 points at 50%).
	for p, got := range under {
		if share := 100 * float64(got) / n; math.Abs(share-p) > 1.5 {
			t.Errorf("%g%%: %.2f%% of machines admitted", p, share)
		}
	}
	// Another release reshuffles the order: not the same first machines.
	same := 0
	for i := range n {
		id := fmt.Sprintf("machine-%05d", i)
		if Admitted(id, "1.2.0", 10) && Admitted(id, "1.3.0", 10) {
			same++
		}
	}
	if same > n/50 {
		t.Errorf("%d machines in the first 10%% of both releases; want about 1%%", same)
	}
}

// TestRampMonotonic: as a linear ramp runs, pauses and resumes, the
// percentage never falls and an admitted machine stays admitted.
func TestRampMonotonic(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &Rollout{Channel: "stable", Version: "1.2.0", From: 0, Percent: 80, Start: t0, Over: 10 * time.Hour, State: RolloutActive}
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%d", i)
	}
	admitted := map[string]bool{}
	last := -1.0
	for step := 0; step <= 30; step++ {
		now := t0.Add(time.Duration(step) * time.Hour)
		if step == 4 { // pause for 3 hours
			r.Elapsed += now.Sub(r.Start)
			r.State = RolloutPaused
		}
		if step == 7 {
			r.Start, r.State = now, RolloutActive
		}
		p := r.PercentAt(now)
		if p < last {
			t.Fatalf("hour %d: percentage fell from %v to %v", step, last, p)
		}
		if step >= 4 && step <= 7 && p != 32 {
			t.Errorf("hour %d (paused after 4 h of 10): %v%%, want 32%%", step, p)
		}
		last = p
		for _, id := range ids {
			a := Admitted(id, "1.2.0", p)
			if admitted[id] && !a {
				t.Fatalf("hour %d: %s was admitted and is no longer", step, id)
			}
			admitted[id] = a
		}
	}
	if last != 80 {
		t.Errorf("after the ramp: %v%%, want 80%%", last)
	}
	if r.PercentAt(t0.Add(-time.Hour)) < 0 {
		t.Error("negative percentage before the start")
	}
}

func TestHaltRule(t *testing.T) {
	outs := func(pattern string) []Outcome {
		var o []Outcome
		for i, c := range pattern {
			o = append(o, Outcome{Machine: fmt.Sprint("m", i), Failed: c == 'x', Reason: "did not boot"})
		}
		return o
	}
	many := func(n, failedAt int) string {
		b := []byte(strings.Repeat(".", n))
		for i := 0; i < failedAt; i++ {
			b[n-1-i*3] = 'x'
		}
		return string(b)
	}
	for _, tc := range []struct {
		rule    HaltRule
		pattern string
		halt    bool
	}{
		{DefaultHaltRule, "", false},
		{DefaultHaltRule, "x", false},       // 1 of the first 5 is tolerated
		{DefaultHaltRule, "x.x", true},      // 2 of the first 5
		{DefaultHaltRule, "....x..x", true}, // 1 in the first 5, then 2 of 8 is over 5%
		{DefaultHaltRule, many(100, 5), false},
		{DefaultHaltRule, many(100, 6), true}, // 6% of 100
		{DefaultHaltRule, many(40, 3), true},  // 7.5%
		{HaltRule{First: 5, MaxFirst: 0, MaxPercent: 5}, "x", true},
		{HaltRule{First: 5, MaxFirst: 0, MaxPercent: 5, Disabled: true}, "xxxxx", false},
		{HaltRule{First: 0, MaxFirst: 0, MaxPercent: 50}, "x.", false},
		{HaltRule{First: 0, MaxFirst: 0, MaxPercent: 50}, "xx.", true},
	} {
		why := tc.rule.Check(outs(tc.pattern))
		if (why != "") != tc.halt {
			t.Errorf("%+v on %q: halt %q, want halt=%v", tc.rule, tc.pattern, why, tc.halt)
		}
		if why != "" && !strings.Contains(why, "did not boot") {
			t.Errorf("halt reason %q does not say what failed", why)
		}
	}
}

func TestDecide(t *testing.T) {
	// Find one machine inside and one outside a 30% wave of 1.2.0.
	var in, out string
	for i := 0; in == "" || out == ""; i++ {
		id := fmt.Sprint("node", i)
		if Admitted(id, "1.2.0", 30) {
			in = cmp.Or(in, id)
		} else {
			out = cmp.Or(out, id)
		}
	}
	active := []RolloutView{{Version: "1.2.0", Percent: 30, State: RolloutActive}}
	for _, tc := range []struct {
		name                    string
		doc                     *RolloutDoc
		machine, group, running string
		take                    string
	}{
		{"no rollout", nil, out, "default", "1.0.0", "1.2.0"},
		{"admitted", &RolloutDoc{Rollouts: active}, in, "default", "1.0.0", "1.2.0"},
		{"outside the wave", &RolloutDoc{Rollouts: active}, out, "default", "1.0.0", ""},
		{"other version not governed", &RolloutDoc{Rollouts: []RolloutView{{Version: "1.1.0", Percent: 0}}}, out, "default", "1.0.0", "1.2.0"},
		{"halted", &RolloutDoc{Rollouts: []RolloutView{{Version: "1.2.0", Percent: 100, State: RolloutHalted}}}, in, "default", "1.0.0", ""},
		{"paused keeps admitted", &RolloutDoc{Rollouts: []RolloutView{{Version: "1.2.0", Percent: 30, State: RolloutPaused}}}, in, "default", "1.0.0", "1.2.0"},
		{"pinned group", &RolloutDoc{Pins: map[string]string{"db": "1.1.0"}}, in, "db", "1.0.0", "1.1.0"},
		{"pinned and there", &RolloutDoc{Pins: map[string]string{"db": "1.1.0"}}, in, "db", "1.1.0", ""},
		{"pin of another group", &RolloutDoc{Pins: map[string]string{"db": "1.1.0"}}, in, "web", "1.0.0", "1.2.0"},
		{"pin newer than offered", &RolloutDoc{Pins: map[string]string{"db": "1.5.0"}}, in, "db", "1.0.0", "1.2.0"},
		{"barrier first", &RolloutDoc{Barrier: "1.1.0"}, out, "default", "1.0.0", "1.1.0"},
		{"barrier passed", &RolloutDoc{Barrier: "1.1.0"}, in, "default", "1.1.0", "1.2.0"},
		{"barrier is the offer", &RolloutDoc{Barrier: "1.2.0"}, in, "default", "1.0.0", "1.2.0"},
		{"never a downgrade", &RolloutDoc{Pins: map[string]string{"db": "0.9.0"}}, in, "db", "1.0.0", ""},
	} {
		d := tc.doc.Decide(tc.machine, tc.group, tc.running, "1.2.0")
		if d.Take != tc.take {
			t.Errorf("%s: take %q (%s), want %q", tc.name, d.Take, d.Reason, tc.take)
		}
		if d.Take == "" && d.Reason == "" && tc.name != "pinned and there" && tc.name != "never a downgrade" {
			t.Errorf("%s: holds back without saying why", tc.name)
		}
	}
}

func TestValidateRollout(t *testing.T) {
	good := Rollout{Channel: "stable", Version: "1.2.0", Percent: 10, Halt: DefaultHaltRule}
	if err := ValidateRollout(&good); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Rollout){
		"channel":   func(r *Rollout) { r.Channel = "Stable!" },
		"version":   func(r *Rollout) { r.Version = "one" },
		"percent":   func(r *Rollout) { r.Percent = 101 },
		"negative":  func(r *Rollout) { r.Percent = -1 },
		"from":      func(r *Rollout) { r.From = 20 },
		"over":      func(r *Rollout) { r.Over = -time.Second },
		"pin":       func(r *Rollout) { r.Pins = map[string]string{"db": "x"} },
		"barrier":   func(r *Rollout) { r.Barrier = "latest" },
		"halt rule": func(r *Rollout) { r.Halt.MaxPercent = 200 },
	} {
		r := good
		mut(&r)
		if err := ValidateRollout(&r); err == nil {
			t.Errorf("%s: accepted %+v", name, r)
		}
	}
}
