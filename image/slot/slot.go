// Package slot reads and changes the A/B boot state of a Pith disk: the
// CoreOS gptprio attribute bits of USR-A/USR-B in the GPT (of an image file
// or a block device) and GRUB's environment block (grubenv on the ESP) with
// saved_entry (the good slot) and next_entry (a one-time trial). The image
// builder writes the initial state; the node agent uses it for updates.
package slot

import (
	"fmt"
	"os"
)

// Slot names a USR slot: "a" or "b", the grub.cfg menuentry ids.
type Slot string

// The two slots.
const (
	A Slot = "a"
	B Slot = "b"
)

// Parse validates a slot name.
func Parse(s string) (Slot, error) {
	switch Slot(s) {
	case A, B:
		return Slot(s), nil
	}
	return "", fmt.Errorf("unknown slot %q: use a or b", s)
}

// Label is the slot's GPT partition label.
func (s Slot) Label() string {
	if s == B {
		return "USR-B"
	}
	return "USR-A"
}

// Other is the other slot.
func (s Slot) Other() Slot {
	if s == A {
		return B
	}
	return A
}

// grubenv keys.
const (
	KeySaved = "saved_entry"
	KeyNext  = "next_entry"
)

// Part is one USR partition's GPT state.
type Part struct {
	Slot     Slot   `json:"slot"`
	Number   int    `json:"number"`
	PartUUID string `json:"partuuid"`
	Prio
}

// ReadParts returns the GPT state of USR-A and USR-B on dev (an image file
// or a whole-disk block device).
func ReadParts(dev string) (map[Slot]Part, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, primary, _, err := openGPT(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dev, err)
	}
	return partsOf(dev, primary)
}

func partsOf(dev string, g *gptSide) (map[Slot]Part, error) {
	out := map[Slot]Part{}
	for _, e := range g.list() {
		for _, s := range []Slot{A, B} {
			if e.name == s.Label() {
				out[s] = Part{Slot: s, Number: e.index, PartUUID: e.guid, Prio: DecodePrio(e.attr)}
			}
		}
	}
	for _, s := range []Slot{A, B} {
		if _, ok := out[s]; !ok {
			return nil, fmt.Errorf("%s: no partition labelled %s", dev, s.Label())
		}
	}
	return out, nil
}

// WritePrio sets the gptprio bits of slot s on dev, in both GPT copies.
func WritePrio(dev string, s Slot, p Prio) error {
	return updateParts(dev, func(parts map[Slot]Part) map[Slot]Prio {
		return map[Slot]Prio{s: p}
	})
}

// updateParts applies change to the current state and writes the slots it
// returns, primary and backup GPT, then syncs.
func updateParts(dev string, change func(map[Slot]Part) map[Slot]Prio) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	ss, primary, backup, err := openGPT(f)
	if err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	parts, err := partsOf(dev, primary)
	if err != nil {
		return err
	}
	entries := map[int]uint64{}
	for _, e := range primary.list() {
		entries[e.index] = e.attr
	}
	for s, p := range change(parts) {
		n := parts[s].Number
		attr, err := p.Apply(entries[n])
		if err != nil {
			return err
		}
		primary.setAttr(n, attr)
		backup.setAttr(n, attr)
	}
	// Backup first: a torn write leaves a valid primary or a valid backup.
	if err := backup.write(f, ss); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := primary.write(f, ss); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// State is the boot state of a disk.
type State struct {
	Parts map[Slot]Part `json:"parts"`
	Saved string        `json:"saved_entry"` // grubenv saved_entry: the good slot
	Next  string        `json:"next_entry"`  // grubenv next_entry: pending one-time trial
}

// Default is the slot GRUB boots next: the trial if one is pending, else
// the saved (good) slot, else a.
func (st *State) Default() Slot {
	if s, err := Parse(st.Next); err == nil {
		return s
	}
	if s, err := Parse(st.Saved); err == nil {
		return s
	}
	return A
}

// Status reads the GPT state of dev and the grubenv file at envPath.
func Status(dev, envPath string) (*State, error) {
	parts, err := ReadParts(dev)
	if err != nil {
		return nil, err
	}
	env, err := ReadEnvFile(envPath)
	if err != nil {
		return nil, err
	}
	return &State{Parts: parts, Saved: env.Get(KeySaved), Next: env.Get(KeyNext)}, nil
}

// TrialPrio is the gptprio state SetTrial gives a slot, given the other.
func TrialPrio(other Prio) Prio {
	return Prio{Priority: min(other.Priority+1, 15), Tries: 1}
}

// SetTrial arranges a one-time trial boot of slot s: USR-s gets the highest
// priority with one try and not successful, and grubenv's next_entry=s.
// GRUB clears next_entry as it boots it, so a failed trial falls back to
// saved_entry on the following boot.
func SetTrial(dev, envPath string, s Slot) error {
	env, err := ReadEnvFile(envPath)
	if err != nil {
		return err
	}
	err = updateParts(dev, func(parts map[Slot]Part) map[Slot]Prio {
		return map[Slot]Prio{s: TrialPrio(parts[s.Other()].Prio)}
	})
	if err != nil {
		return err
	}
	env.Set(KeyNext, string(s))
	return WriteEnvFile(envPath, env)
}

// GoodPrios is the gptprio state after slot s is marked good: s successful
// with priority 2; the other slot stays a fallback (priority 1) only if it
// was itself successful.
func GoodPrios(s Slot, parts map[Slot]Part) map[Slot]Prio {
	other := parts[s.Other()].Prio
	op := 0
	if other.Successful {
		op = 1
	}
	return map[Slot]Prio{
		s:         {Priority: 2, Successful: true},
		s.Other(): {Priority: op, Tries: 0, Successful: other.Successful},
	}
}

// MarkGood records slot s as good: successful in the GPT, saved_entry=s and
// no pending trial in grubenv.
func MarkGood(dev, envPath string, s Slot) error {
	env, err := ReadEnvFile(envPath)
	if err != nil {
		return err
	}
	if err := updateParts(dev, func(parts map[Slot]Part) map[Slot]Prio { return GoodPrios(s, parts) }); err != nil {
		return err
	}
	env.Set(KeySaved, string(s))
	env.Set(KeyNext, "")
	return WriteEnvFile(envPath, env)
}

// InitialEnv is the grubenv of a freshly built image: slot a is good, no
// trial; generation 1 of the copies (the second is made by the first write).
func InitialEnv() *Env {
	e := NewEnv()
	e.Set(KeySaved, string(A))
	e.Set(KeyNext, "")
	return framed(e, 1)
}

// Built-image gptprio state (CONTRACT.md): USR-A priority 1, successful;
// USR-B empty.
var (
	InitialA = Prio{Priority: 1, Successful: true}
	InitialB = Prio{}
)

// SettleTrial records a one-time trial that did not come up. GRUB clears
// next_entry as it boots a trial but never touches the GPT, so after it fell
// back the failed slot still shows the tries SetTrial gave it and looks
// bootable to gptprio readers. Called on the slot that is running: once no
// trial is pending, the other slot with tries left and never marked
// successful failed its trial, and gets no priority and no tries. It returns
// that slot, if any.
func SettleTrial(dev, envPath string, running Slot) (Slot, bool, error) {
	env, err := ReadEnvFile(envPath)
	if err != nil {
		return "", false, err
	}
	if env.Get(KeyNext) != "" {
		return "", false, nil // a trial is still pending: nothing booted it yet
	}
	parts, err := ReadParts(dev)
	if err != nil {
		return "", false, err
	}
	other := running.Other()
	if p := parts[other].Prio; p.Tries == 0 || p.Successful {
		return "", false, nil
	}
	if err := WritePrio(dev, other, Prio{}); err != nil {
		return "", false, err
	}
	return other, true, nil
}
