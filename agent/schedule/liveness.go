package schedule

// Liveness: the leader's table of machines and when each last beat.

import (
	"sort"
	"sync"
	"time"
)

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
	now     func() time.Time
	ttl     time.Duration
	mu      sync.Mutex
	since   time.Time
	seen    map[string]*seen
	changed chan struct{}
}

// NewLiveness returns a table whose grace period starts now; now is the
// clock (time.Now, or a FakeClock's Now in tests).
func NewLiveness(now func() time.Time, ttl time.Duration) *Liveness {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	l := &Liveness{now: now, ttl: ttl, changed: make(chan struct{})}
	l.Reset()
	return l
}

// TTL returns the configured TTL.
func (l *Liveness) TTL() time.Duration { return l.ttl }

// Reset forgets everything and restarts the grace period (call on gaining
// leadership).
func (l *Liveness) Reset() {
	l.mu.Lock()
	l.since = l.now()
	l.seen = map[string]*seen{}
	l.mu.Unlock()
}

// Heartbeat records one agent heartbeat.
func (l *Liveness) Heartbeat(hb Heartbeat) {
	now := l.now()
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
	now := l.now()
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
	now := l.now()
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
	now := l.now()
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
	now := l.now()
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
	now := l.now()
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
