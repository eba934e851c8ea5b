package channels

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Phased rollouts.
//
// Trust: the signed channel manifest is the only thing that can make a node
// install a release. The rollout document (GET /v1/rollout/<channel>) is
// unsigned and served by the channel server; a node uses it only to hold
// back from, or take an earlier step towards, releases that signed
// manifests of its channel offer. A server (or anyone in between) lying
// about the rollout can therefore delay updates, as a server that stops
// answering already can, but never make a node run something unsigned, for
// another channel, expired or older than what it runs.
//
// The node decides: it computes Admitted from the document's current
// percentage and its own stable hash of (machine ID, version), so the
// server needs no per-machine state to steer a rollout and a machine's
// answer never flips back as the percentage grows.

// RolloutState is what an operator has done to a rollout.
type RolloutState string

// Rollout states.
const (
	RolloutActive RolloutState = "active"
	RolloutPaused RolloutState = "paused"
	// RolloutHalted: the server stopped it because too many machines that
	// installed the version rolled back or failed health.
	RolloutHalted RolloutState = "halted"
)

// Rollout is the operator's plan for one version on one channel, as `pith
// release rollout` writes it (the server adds halts of its own).
type Rollout struct {
	Channel string `json:"channel"`
	Version string `json:"version"`
	// Percent is the share of machines admitted at the end of the ramp;
	// From is where the ramp starts (0 for a new rollout).
	Percent float64 `json:"percent"`
	From    float64 `json:"from,omitempty"`
	// Start and Over make a linear ramp from From to Percent; Over 0 means
	// Percent at once. Paused time does not count: Elapsed accumulates the
	// ramp time spent before the last pause.
	Start   time.Time     `json:"start"`
	Over    time.Duration `json:"over,omitempty"`
	Elapsed time.Duration `json:"elapsed,omitempty"`
	State   RolloutState  `json:"state"`
	// Pins hold machines of a group (the reboot group, "default" when
	// none) at a version: they take nothing newer.
	Pins map[string]string `json:"pins,omitempty"`
	// Barrier is a release every machine must run before anything newer:
	// a machine older than it takes the barrier first.
	Barrier string   `json:"barrier,omitempty"`
	Halt    HaltRule `json:"halt"`
	// Since: failures reported before it do not count towards a halt (set
	// when an operator resumes a halted rollout).
	Since time.Time `json:"since"`
	// Generation grows with every operator change.
	Generation int `json:"generation"`
}

// HaltRule says when a rollout stops by itself. Among the machines that
// installed the version, it halts when more than MaxFirst of the first First
// failed (rolled back or failed health), or, past the first First, when more
// than MaxPercent of them failed.
type HaltRule struct {
	First      int     `json:"first"`
	MaxFirst   int     `json:"max_first"`
	MaxPercent float64 `json:"max_percent"`
	Disabled   bool    `json:"disabled,omitempty"`
}

// DefaultHaltRule: more than 1 of the first 5, or more than 5%.
var DefaultHaltRule = HaltRule{First: 5, MaxFirst: 1, MaxPercent: 5}

// Validate checks a rule an operator typed.
func (h HaltRule) Validate() error {
	if h.First < 0 || h.MaxFirst < 0 || h.MaxPercent < 0 || h.MaxPercent > 100 || math.IsNaN(h.MaxPercent) {
		return fmt.Errorf("halt rule %+v: counts must be >= 0 and the percentage within 0-100", h)
	}
	return nil
}

// Outcome is one machine's result with a version, in install order.
type Outcome struct {
	Machine string
	Failed  bool
	Reason  string
}

// Check applies the rule to outcomes (machines that installed the version,
// in the order they installed it). It returns why the rollout must halt, or
// "".
func (h HaltRule) Check(outcomes []Outcome) string {
	if h.Disabled || len(outcomes) == 0 {
		return ""
	}
	failed, firstFailed := 0, 0
	var last Outcome
	for i, o := range outcomes {
		if !o.Failed {
			continue
		}
		failed++
		last = o
		if i < h.First {
			firstFailed++
		}
	}
	if firstFailed > h.MaxFirst {
		return fmt.Sprintf("%d of the first %d machines that installed it failed (more than %d); last: %s: %s", firstFailed, min(h.First, len(outcomes)), h.MaxFirst, last.Machine, last.Reason)
	}
	if len(outcomes) > h.First {
		if pct := 100 * float64(failed) / float64(len(outcomes)); pct > h.MaxPercent {
			return fmt.Sprintf("%d of %d machines that installed it failed (%.1f%%, more than %g%%); last: %s: %s", failed, len(outcomes), pct, h.MaxPercent, last.Machine, last.Reason)
		}
	}
	return ""
}

// PercentAt is the share of machines admitted at now.
func (r *Rollout) PercentAt(now time.Time) float64 {
	if r.Over <= 0 {
		return r.Percent
	}
	el := r.Elapsed
	if r.State == RolloutActive && now.After(r.Start) {
		el += now.Sub(r.Start)
	}
	if el >= r.Over {
		return r.Percent
	}
	return r.From + (r.Percent-r.From)*float64(el)/float64(r.Over)
}

// Bucket is a machine's stable position in [0, 100) for a version: the
// same machine always gets the same number, and different versions reshuffle
// the fleet so the same machines are not always first.
func Bucket(machineID, version string) float64 {
	h := sha256.Sum256([]byte("pith-rollout\x00" + machineID + "\x00" + version))
	// 53 bits make an exact float64 fraction.
	return float64(binary.BigEndian.Uint64(h[:8])>>11) / (1 << 53) * 100
}

// Admitted reports whether a machine takes version at percent.
func Admitted(machineID, version string, percent float64) bool {
	return Bucket(machineID, version) < percent
}

// RolloutDoc is what the server sends a node: the rollouts of one channel
// with their percentage now, as the server's clock sees it.
type RolloutDoc struct {
	Channel  string        `json:"channel"`
	Rollouts []RolloutView `json:"rollouts"`
	// Pins and Barrier apply to every version of the channel.
	Pins    map[string]string `json:"pins,omitempty"`
	Barrier string            `json:"barrier,omitempty"`
}

// RolloutView is one version's rollout as nodes and the dashboard see it.
type RolloutView struct {
	Version string       `json:"version"`
	Percent float64      `json:"percent"`
	Target  float64      `json:"target"`
	State   RolloutState `json:"state"`
	Reason  string       `json:"reason,omitempty"`
}

// Decision is a node's answer to "may I take the release the channel offers?"
type Decision struct {
	// Take is the version to install: the offered one, an earlier barrier
	// or pinned version, or "" to hold back.
	Take   string
	Reason string
}

// Decide is the node's rollout decision for the signed release offered on
// its channel while it runs running. It never names a version outside
// (running, offered]; the caller still needs a signed manifest for it.
func (d *RolloutDoc) Decide(machineID, group, running, offered string) Decision {
	if d == nil {
		return Decision{Take: offered}
	}
	target, why := offered, ""
	if pin := d.Pins[group]; pin != "" && newer(offered, pin) {
		target, why = pin, fmt.Sprintf("group %s is pinned to %s", group, pin)
	}
	if b := d.Barrier; b != "" && newer(b, running) && newer(target, b) {
		target, why = b, fmt.Sprintf("barrier %s comes first", b)
	}
	if !newer(target, running) {
		return Decision{Reason: why}
	}
	for _, r := range d.Rollouts {
		if r.Version != target {
			continue
		}
		switch r.State {
		case RolloutHalted:
			return Decision{Reason: fmt.Sprintf("rollout of %s halted: %s", target, r.Reason)}
		case RolloutPaused:
			if !Admitted(machineID, target, r.Percent) {
				return Decision{Reason: fmt.Sprintf("rollout of %s paused at %.1f%%", target, r.Percent)}
			}
		default:
			if !Admitted(machineID, target, r.Percent) {
				return Decision{Reason: fmt.Sprintf("rollout of %s at %.1f%%; this machine's place is %.1f%%", target, r.Percent, Bucket(machineID, target))}
			}
		}
	}
	return Decision{Take: target, Reason: why}
}

// newer reports a > b as versions; an unparsable version is never newer.
func newer(a, b string) bool {
	va, err := ParseVersion(a)
	if err != nil {
		return false
	}
	vb, err := ParseVersion(b)
	if err != nil {
		return true
	}
	return va.Compare(vb) > 0
}

// ValidateRollout checks an operator's rollout before it is stored.
func ValidateRollout(r *Rollout) error {
	if !ValidChannelName(r.Channel) {
		return fmt.Errorf("channel %q: use lowercase letters, digits, '.', '_' or '-'", r.Channel)
	}
	if r.Version != "" {
		if _, err := ParseVersion(r.Version); err != nil {
			return err
		}
	}
	if r.Barrier != "" {
		if _, err := ParseVersion(r.Barrier); err != nil {
			return fmt.Errorf("barrier: %w", err)
		}
	}
	for g, v := range r.Pins {
		if g == "" {
			return errors.New("pin: empty group name")
		}
		if _, err := ParseVersion(v); err != nil {
			return fmt.Errorf("pin %s: %w", g, err)
		}
	}
	if r.Percent < 0 || r.Percent > 100 || r.From < 0 || r.From > r.Percent || math.IsNaN(r.Percent) || math.IsNaN(r.From) {
		return fmt.Errorf("percentage %g (from %g): want 0 <= from <= percent <= 100", r.Percent, r.From)
	}
	if r.Over < 0 {
		return fmt.Errorf("--over %s: must not be negative", r.Over)
	}
	return r.Halt.Validate()
}
