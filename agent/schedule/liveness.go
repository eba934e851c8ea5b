package schedule

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"
)

// Clock is injectable so liveness and the engine can be tested without
// sleeping.
type Clock interface{ Now() time.Time }

// RealClock is the wall clock.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// FakeClock is a manually advanced clock for tests and simulations.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock starts a fake clock at a fixed instant.
func NewFakeClock() *FakeClock { return &FakeClock{t: time.Unix(1_700_000_000, 0)} }

// Now implements Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// DefaultTTL is how long a machine may go without a heartbeat before the
// leader declares it dead.
const DefaultTTL = 5 * time.Second

// UnitReport is what an agent reports about one unit it runs.
type UnitReport struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
	// Current is the state the agent reached: loaded or launched.
	Current     DesiredState `json:"currentState"`
	LoadState   string       `json:"loadState"`
	ActiveState string       `json:"activeState"`
	SubState    string       `json:"subState"`
	// Error is the last error applying the unit, if any.
	Error string `json:"error,omitempty"`
}

// Heartbeat is what an agent sends the leader directly (never through the
// log): its machine record and the state of the units it runs.
type Heartbeat struct {
	Machine Machine      `json:"machine"`
	Units   []UnitReport `json:"units"`
}

// Heartbeat limits. A heartbeat carries names, hashes and states, never
// unit files, so its size follows from these bounds alone (not from
// MaxUnitFileSize). Every string is restricted to characters JSON writes
// as themselves (unit names may hold a backslash, written as two bytes),
// so the encoded size of the largest valid heartbeat is known exactly.
const (
	// MaxMachineIDLen bounds a machine ID (/etc/machine-id has 32).
	MaxMachineIDLen = 128
	// maxIPLen is the longest textual IP address (IPv4-mapped IPv6).
	maxIPLen = 45
	// MaxMetadataEntries and MaxMetadataLen bound a machine's metadata:
	// entries, and bytes of each key and each value.
	MaxMetadataEntries = 64
	MaxMetadataLen     = 256
	// MaxUnitsPerMachine is the most units one machine runs (and reports):
	// the engine places no more there.
	MaxUnitsPerMachine = 4096
	// MaxReportStateLen bounds systemd's load/active/sub state words.
	MaxReportStateLen = 32
	// MaxReportErrorLen bounds the error text of one unit report; agents
	// cut longer errors (the full text is in their log).
	MaxReportErrorLen = 256

	hashLen        = 40 // hex SHA-1 (Hash)
	maxCurrentLen  = len(Launched)
	maxReportJSON  = len(`{"name":"","hash":"","currentState":"","loadState":"","activeState":"","subState":"","error":""}`) + 2*MaxUnitNameLen + hashLen + maxCurrentLen + 3*MaxReportStateLen + MaxReportErrorLen
	maxMachineJSON = len(`{"id":"","primaryIP":"","metadata":{}}`) + MaxMachineIDLen + maxIPLen + MaxMetadataEntries*(len(`"":"",`)+2*MaxMetadataLen)

	// MaxHeartbeatSize is the encoded size of the largest valid heartbeat:
	// the one limit the leader reads heartbeats with and followers forward
	// them with.
	MaxHeartbeatSize = len(`{"machine":,"units":[]}`) + maxMachineJSON + MaxUnitsPerMachine*(maxReportJSON+len(","))
)

// plainText reports whether s holds only printable ASCII that JSON
// encodes as itself (no quote, backslash or HTML-escaped <, >, &).
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// clampText makes s plain text of at most n bytes (other bytes become '?').
func clampText(s string, n int) string {
	if len(s) <= n && plainText(s) {
		return s
	}
	b := []byte(s)
	if len(b) > n {
		b = b[:n]
	}
	for i, c := range b {
		if !plainText(string(c)) {
			b[i] = '?'
		}
	}
	return string(b)
}

// ValidateMachine checks a machine record against the heartbeat limits,
// with the fix in the message (pithd checks its own at start-up).
func ValidateMachine(m Machine) error {
	switch {
	case m.ID == "":
		return errors.New("machine ID is empty: give --machine-id or fill /etc/machine-id")
	case len(m.ID) > MaxMachineIDLen:
		return fmt.Errorf("machine ID is %d bytes, over the limit of %d", len(m.ID), MaxMachineIDLen)
	case len(m.PublicIP) > maxIPLen || m.PublicIP != "" && net.ParseIP(m.PublicIP) == nil:
		return fmt.Errorf("public IP %q is not an IP address: give --public-ip an address such as 10.0.0.5", m.PublicIP)
	case len(m.Metadata) > MaxMetadataEntries:
		return fmt.Errorf("machine has %d metadata entries, over the limit of %d", len(m.Metadata), MaxMetadataEntries)
	}
	for _, c := range m.ID {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-", c)) {
			return fmt.Errorf("machine ID %q contains %q: use letters, digits and ._:- only", m.ID, c)
		}
	}
	for k, v := range m.Metadata {
		switch {
		case k == "" || len(k) > MaxMetadataLen || len(v) > MaxMetadataLen:
			return fmt.Errorf("metadata %q=%q: keys must be 1 to %d bytes and values at most %d", k, v, MaxMetadataLen, MaxMetadataLen)
		case !plainText(k) || !plainText(v) || strings.ContainsAny(k, "=,") || strings.Contains(v, ","):
			return fmt.Errorf("metadata %q=%q: use printable ASCII without quotes, backslashes, <, >, & (and no = or , in keys, no , in values)", k, v)
		}
	}
	return nil
}

// Clamp fits a heartbeat into the limits an agent cannot be refused for:
// error texts and state words are cut and made plain, and reports beyond
// MaxUnitsPerMachine dropped (returned as dropped), so an odd systemd
// message or too many global units never silences a machine.
func (hb *Heartbeat) Clamp() (dropped int) {
	if len(hb.Units) > MaxUnitsPerMachine {
		dropped = len(hb.Units) - MaxUnitsPerMachine
		hb.Units = hb.Units[:MaxUnitsPerMachine:MaxUnitsPerMachine]
	}
	for i := range hb.Units {
		u := &hb.Units[i]
		u.LoadState = clampText(u.LoadState, MaxReportStateLen)
		u.ActiveState = clampText(u.ActiveState, MaxReportStateLen)
		u.SubState = clampText(u.SubState, MaxReportStateLen)
		u.Error = clampText(u.Error, MaxReportErrorLen)
	}
	return dropped
}

// Validate checks a received heartbeat against the limits (the leader
// refuses one that fails, naming the problem).
func (hb *Heartbeat) Validate() error {
	if err := ValidateMachine(hb.Machine); err != nil {
		return err
	}
	if len(hb.Units) > MaxUnitsPerMachine {
		return fmt.Errorf("heartbeat reports %d units, over the limit of %d per machine", len(hb.Units), MaxUnitsPerMachine)
	}
	for _, u := range hb.Units {
		if err := ValidateName(u.Name); err != nil {
			return fmt.Errorf("unit report: %v", err)
		}
		if u.Hash != "" {
			if _, err := hex.DecodeString(u.Hash); err != nil || len(u.Hash) != hashLen {
				return fmt.Errorf("unit report %s: hash %q is not %d hex digits", u.Name, u.Hash, hashLen)
			}
		}
		switch u.Current {
		case "", Inactive, Loaded, Launched:
		default:
			return fmt.Errorf("unit report %s: current state %q is not inactive, loaded or launched", u.Name, u.Current)
		}
		for _, st := range []string{u.LoadState, u.ActiveState, u.SubState} {
			if len(st) > MaxReportStateLen || !plainText(st) {
				return fmt.Errorf("unit report %s: state %q is not a systemd state word", u.Name, st)
			}
		}
		if len(u.Error) > MaxReportErrorLen || !plainText(u.Error) {
			return fmt.Errorf("unit report %s: error text over %d bytes or not plain text", u.Name, MaxReportErrorLen)
		}
	}
	return nil
}

// MachineStatus is the leader's view of one machine.
type MachineStatus int

const (
	// Unknown: not heard from, but this leader has not yet waited one TTL.
	Unknown MachineStatus = iota
	// Alive: heartbeat within TTL.
	Alive
	// Dead: no heartbeat for a TTL, after the leader's own grace period.
	Dead
)

func (s MachineStatus) String() string {
	return [...]string{"unknown", "alive", "dead"}[s]
}

type seen struct {
	last       time.Time
	aliveSince time.Time
	wasDead    bool
	hb         Heartbeat
}

// Liveness is the leader's in-memory heartbeat table. It is soft state: a
// new leader starts empty (Reset) and learns everything again within one
// heartbeat interval, which is why it waits one TTL before declaring
// anyone dead.
type Liveness struct {
	clock   Clock
	ttl     time.Duration
	mu      sync.Mutex
	since   time.Time
	seen    map[string]*seen
	changed chan struct{}
}

// NewLiveness returns a table whose grace period starts now.
func NewLiveness(clock Clock, ttl time.Duration) *Liveness {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	l := &Liveness{clock: clock, ttl: ttl, changed: make(chan struct{})}
	l.Reset()
	return l
}

// TTL returns the configured TTL.
func (l *Liveness) TTL() time.Duration { return l.ttl }

// Reset forgets everything and restarts the grace period (call on gaining
// leadership).
func (l *Liveness) Reset() {
	l.mu.Lock()
	l.since = l.clock.Now()
	l.seen = map[string]*seen{}
	l.mu.Unlock()
}

// Heartbeat records one agent heartbeat.
func (l *Liveness) Heartbeat(hb Heartbeat) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen[hb.Machine.ID]
	notify := false
	if s == nil {
		s = &seen{aliveSince: now}
		l.seen[hb.Machine.ID] = s
		notify = true
	} else {
		if now.Sub(s.last) > l.ttl {
			// It had expired: this is a return, which starts a new hold-down.
			s.aliveSince = now
			s.wasDead = true
			notify = true
		}
		notify = notify || !sameMachine(&s.hb.Machine, &hb.Machine)
	}
	s.last = now
	s.hb = hb
	if notify {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// Changed returns a channel closed when a machine appears, returns or
// changes its record (deaths are noticed by the engine's periodic pass).
func (l *Liveness) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Status returns a machine's liveness now.
func (l *Liveness) Status(id string) MachineStatus {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status(id, now)
}

func (l *Liveness) status(id string, now time.Time) MachineStatus {
	if s := l.seen[id]; s != nil && now.Sub(s.last) <= l.ttl {
		return Alive
	}
	if now.Sub(l.since) < l.ttl {
		return Unknown
	}
	return Dead
}

// SilentFor is how long machine id has not been heard from by this
// leader (since the leader started, for machines it never heard).
func (l *Liveness) SilentFor(id string) time.Duration {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.seen[id]; s != nil {
		return now.Sub(s.last)
	}
	return now.Sub(l.since)
}

// Placeable reports whether new units may be placed on machine id: it is
// alive and, if it came back after being dead, has stayed alive for one TTL
// (so a flapping machine does not attract work).
func (l *Liveness) Placeable(id string) bool {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.status(id, now) != Alive {
		return false
	}
	s := l.seen[id]
	return !s.wasDead || now.Sub(s.aliveSince) >= l.ttl
}

// Live returns the machine records of live machines, sorted by ID, as
// their heartbeats describe them.
func (l *Liveness) Live() []Machine {
	now := l.clock.Now()
	l.mu.Lock()
	out := make([]Machine, 0, len(l.seen))
	for id, s := range l.seen {
		if l.status(id, now) == Alive {
			out = append(out, s.hb.Machine)
		}
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// MachineReport is one machine's latest unit reports.
type MachineReport struct {
	MachineID string
	Units     []UnitReport
}

// Reports returns the latest unit reports of live machines, sorted.
func (l *Liveness) Reports() []MachineReport {
	now := l.clock.Now()
	l.mu.Lock()
	out := make([]MachineReport, 0, len(l.seen))
	for id, s := range l.seen {
		if l.status(id, now) == Alive {
			out = append(out, MachineReport{MachineID: id, Units: s.hb.Units})
		}
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].MachineID < out[j].MachineID })
	return out
}
