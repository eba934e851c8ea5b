package channels

import (
	"cmp"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pith-os/pith/pki"
)

// Fleet is the channel server's view of the machines that report to it and
// of the rollouts an operator set. State lives in a directory (by default
// REPO/.fleet, which the server never serves):
//
//	rollouts/<channel>.json  the operator's rollout, written by `pith release rollout`
//	fleet.json               machines, their keys, history and halts, written by the server
//
// Two writers never share a file: the CLI writes rollouts, the server
// writes fleet.json (each with temp file + fsync + rename). A halt is
// recorded in fleet.json against the rollout's version and generation, so
// an operator's resume (a new generation) lifts it.
type Fleet struct {
	dir string
	now func() time.Time
	// SampleEvery is the spacing of the versions-over-time history.
	SampleEvery time.Duration
	// ClusterCAs, when set, lets nodes report with their cluster member
	// certificate (pith cluster issue): one certificate name reports for
	// one machine ID. RequireMember refuses reports signed by a bare key.
	ClusterCAs    *x509.CertPool
	RequireMember bool
	// MaxMachines bounds the machines the server keeps (default
	// DefaultMaxMachines): anyone can make up new machine IDs with new
	// keys, and they must not fill the server's memory and disk.
	MaxMachines int

	mu       sync.Mutex
	st       fleetState
	rollouts map[string]rolloutFile // by channel, cached by file mtime
	dirty    bool
	// installs[channel/version] lists machines in the order they installed it.
	installs map[string][]string
	// members maps a member certificate name to its machine ID.
	members map[string]string
}

type rolloutFile struct {
	mod time.Time
	r   *Rollout
}

type fleetState struct {
	Machines map[string]*Machine `json:"machines"`
	History  []Sample            `json:"history"`
	Halts    map[string]Halt     `json:"halts"` // by channel
}

// Machine is what the server knows of one machine.
type Machine struct {
	ID  string `json:"id"`
	Key []byte `json:"key,omitempty"`
	// Member is the cluster member certificate name the machine reports
	// with (then Key is empty).
	Member  string `json:"member,omitempty"`
	Group   string `json:"group"`
	Channel string `json:"channel"`
	Arch    string `json:"arch"`
	Running string `json:"running"`
	Seq     uint64 `json:"seq"`
	Last    Report `json:"last"`
	// Seen is the server's time of the last report.
	Seen time.Time `json:"seen"`
	// Installed and Failed are per version: when it was written to a slot,
	// and why it failed (rolled back or unhealthy).
	Installed map[string]time.Time `json:"installed,omitempty"`
	Failed    map[string]Failure   `json:"failed,omitempty"`
}

// Failure is a version's failure on one machine.
type Failure struct {
	Event  string    `json:"event"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// Halt is the server's own stop of a rollout.
type Halt struct {
	Version    string    `json:"version"`
	Generation int       `json:"generation"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"time"`
}

// Sample counts machines per channel and running version at one time.
type Sample struct {
	Time   time.Time                 `json:"time"`
	Counts map[string]map[string]int `json:"counts"` // channel -> version -> machines
}

// DefaultMaxMachines is Fleet.MaxMachines's default.
const DefaultMaxMachines = 100000

const (
	fleetFile  = "fleet.json"
	rolloutDir = "rollouts"
	maxSamples = 1440
)

// OpenFleet loads (or starts) the fleet state in dir.
func OpenFleet(dir string) (*Fleet, error) {
	if err := os.MkdirAll(filepath.Join(dir, rolloutDir), 0o755); err != nil {
		return nil, fmt.Errorf("fleet state: %w (give the server a writable state directory, pith channel serve --state DIR)", err)
	}
	f := &Fleet{dir: dir, now: time.Now, SampleEvery: time.Minute, rollouts: map[string]rolloutFile{}}
	b, err := os.ReadFile(filepath.Join(dir, fleetFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("fleet state: %w", err)
	default:
		if err := json.Unmarshal(b, &f.st); err != nil {
			return nil, fmt.Errorf("fleet state %s: %v (move it away to start afresh)", filepath.Join(dir, fleetFile), err)
		}
	}
	if f.st.Machines == nil {
		f.st.Machines = map[string]*Machine{}
	}
	if f.st.Halts == nil {
		f.st.Halts = map[string]Halt{}
	}
	f.rebuildInstalls()
	return f, nil
}

func (f *Fleet) rebuildInstalls() {
	type inst struct {
		id string
		t  time.Time
	}
	by := map[string][]inst{}
	f.members = map[string]string{}
	for id, m := range f.st.Machines {
		if m.Member != "" {
			f.members[m.Member] = id
		}
		for v, t := range m.Installed {
			k := m.Channel + "/" + v
			by[k] = append(by[k], inst{id, t})
		}
	}
	f.installs = map[string][]string{}
	for k, l := range by {
		sort.Slice(l, func(i, j int) bool { return l[i].t.Before(l[j].t) || l[i].t.Equal(l[j].t) && l[i].id < l[j].id })
		for _, x := range l {
			f.installs[k] = append(f.installs[k], x.id)
		}
	}
}

// ErrReportRefused: the report is authentic for its key but not accepted
// (another key owns the machine ID, or it is a replay).
var ErrReportRefused = errors.New("report refused")

// Ingest checks and records a signed report.
func (f *Fleet) Ingest(data []byte) error {
	r, id, err := OpenReport(data)
	if err != nil {
		return err
	}
	now := f.now()
	member, err := f.member(id, now)
	if err != nil {
		return fmt.Errorf("%w: machine %s: %v", ErrReportRefused, r.Machine, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.st.Machines[r.Machine]
	if oid, ok := f.members[member]; ok && member != "" && oid != r.Machine {
		return fmt.Errorf("%w: member certificate %q already reports for machine %s, not %s", ErrReportRefused, member, oid, r.Machine)
	}
	if m == nil && len(f.st.Machines) >= cmp.Or(f.MaxMachines, DefaultMaxMachines) {
		return fmt.Errorf("%w: machine %s: the server already knows %d machines, its limit (forget old ones with pith channel forget)", ErrReportRefused, r.Machine, len(f.st.Machines))
	}
	switch {
	case m == nil:
		// Trust on first use: the first key (or member certificate name)
		// to report a machine ID owns it.
		m = &Machine{ID: r.Machine, Key: slices.Clone(id.Key), Member: member}
		f.st.Machines[r.Machine] = m
		if member != "" {
			f.members[member] = r.Machine
		}
	case member != "" && m.Member == "":
		// The cluster CA vouches for more than a first-use key: a
		// machine that got its member certificate switches to it.
		m.Member, m.Key = member, nil
		f.members[member] = r.Machine
	case member != "" && m.Member != member:
		return fmt.Errorf("%w: machine %s reports as member %q, bound to member %q", ErrReportRefused, r.Machine, member, m.Member)
	case member == "" && m.Member != "":
		return fmt.Errorf("%w: machine %s reports with its member certificate %q; a bare key is not enough", ErrReportRefused, r.Machine, m.Member)
	case member == "" && !ed25519.PublicKey(m.Key).Equal(id.Key):
		return fmt.Errorf("%w: machine %s reports with another key (reset with pith channel forget %s if it was reinstalled)", ErrReportRefused, r.Machine, r.Machine)
	}
	if r.Seq <= m.Seq {
		return fmt.Errorf("%w: machine %s: sequence %d not above %d (replayed)", ErrReportRefused, r.Machine, r.Seq, m.Seq)
	}
	if m.Channel != "" && m.Channel != r.Channel {
		// A machine that changed channel starts over in the install lists.
		m.Installed, m.Failed = nil, nil
		f.rebuildInstallsLocked()
	}
	m.Seq, m.Group, m.Channel, m.Arch, m.Running, m.Last, m.Seen = r.Seq, r.Group, r.Channel, r.Arch, r.Running, *r, now
	switch r.Event {
	case EventWritten:
		if r.Version != "" {
			if m.Installed == nil {
				m.Installed = map[string]time.Time{}
			}
			if _, ok := m.Installed[r.Version]; !ok {
				m.Installed[r.Version] = now
				k := r.Channel + "/" + r.Version
				f.installs[k] = append(f.installs[k], m.ID)
			}
		}
	case EventRolledBack, EventUnhealthy:
		if r.Version != "" {
			if m.Failed == nil {
				m.Failed = map[string]Failure{}
			}
			m.Failed[r.Version] = Failure{Event: r.Event, Reason: r.Reason, Time: now}
			f.checkHalt(r.Channel, r.Version, now)
		}
	case EventGood:
		delete(m.Failed, r.Version)
	}
	f.dirty = true
	return nil
}

// member checks a certificate-signed report's chain and role and returns
// the member's name; "" for a key-signed report the server accepts.
func (f *Fleet) member(id Identity, now time.Time) (string, error) {
	if id.Cert == nil {
		if f.RequireMember {
			return "", errors.New("this server takes reports signed with a cluster member certificate only")
		}
		return "", nil
	}
	if f.ClusterCAs == nil {
		return "", errors.New("report signed with a member certificate, but this server trusts no cluster CA (pith channel serve --cluster-ca)")
	}
	if _, err := id.Cert.Verify(x509.VerifyOptions{Roots: f.ClusterCAs, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", fmt.Errorf("member certificate: %v", err)
	}
	if role, err := pki.RoleOf(id.Cert); err != nil || role != pki.Member {
		return "", fmt.Errorf("certificate %q is not a cluster member's (role %q, %v)", id.Cert.Subject.CommonName, role, err)
	}
	if id.Cert.Subject.CommonName == "" {
		return "", errors.New("member certificate without a name")
	}
	return id.Cert.Subject.CommonName, nil
}

func (f *Fleet) rebuildInstallsLocked() { f.rebuildInstalls() }

// checkHalt halts the channel's rollout of version when its rule says so.
func (f *Fleet) checkHalt(channel, version string, now time.Time) {
	r := f.rollout(channel)
	if r == nil || r.Version != version || r.State == RolloutHalted {
		return
	}
	if h, ok := f.st.Halts[channel]; ok && h.Version == version && h.Generation == r.Generation {
		return
	}
	var outs []Outcome
	for _, id := range f.installs[channel+"/"+version] {
		m := f.st.Machines[id]
		o := Outcome{Machine: id}
		if fl, ok := m.Failed[version]; ok && !fl.Time.Before(r.Since) {
			o.Failed, o.Reason = true, fl.Event+": "+fl.Reason
		}
		outs = append(outs, o)
	}
	// A machine can fail without its "written" report ever arriving
	// (reports are best-effort): count it as an installer too.
	for id, m := range f.st.Machines {
		if fl, ok := m.Failed[version]; ok && m.Channel == channel && !fl.Time.Before(r.Since) {
			if _, ok := m.Installed[version]; !ok {
				outs = append(outs, Outcome{Machine: id, Failed: true, Reason: fl.Event + ": " + fl.Reason})
			}
		}
	}
	if why := r.Halt.Check(outs); why != "" {
		f.st.Halts[channel] = Halt{Version: version, Generation: r.Generation, Reason: why, Time: now}
		// A halt must survive a crash right away: write it now.
		if err := f.saveLocked(); err == nil {
			f.dirty = false
		}
	}
}

// rollout returns the operator's rollout of a channel (nil: none), re-read
// when the file changed; callers hold f.mu.
func (f *Fleet) rollout(channel string) *Rollout {
	p := filepath.Join(f.dir, rolloutDir, channel+".json")
	st, err := os.Stat(p)
	if err != nil {
		delete(f.rollouts, channel)
		return nil
	}
	if c, ok := f.rollouts[channel]; ok && c.mod.Equal(st.ModTime()) {
		return c.r
	}
	r, err := ReadRollout(f.dir, channel)
	if err != nil {
		return nil
	}
	f.rollouts[channel] = rolloutFile{mod: st.ModTime(), r: r}
	return r
}

// view is a rollout as nodes see it now, halts applied; callers hold f.mu.
func (f *Fleet) view(r *Rollout, now time.Time) RolloutView {
	v := RolloutView{Version: r.Version, Percent: r.PercentAt(now), Target: r.Percent, State: r.State}
	if h, ok := f.st.Halts[r.Channel]; ok && h.Version == r.Version && h.Generation == r.Generation {
		v.State, v.Reason = RolloutHalted, h.Reason
	}
	return v
}

// RolloutDoc is the document nodes of channel fetch; nil when no rollout
// is set (nodes then take what the channel offers).
func (f *Fleet) RolloutDoc(channel string) *RolloutDoc {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.rollout(channel)
	if r == nil {
		return nil
	}
	d := &RolloutDoc{Channel: channel, Pins: r.Pins, Barrier: r.Barrier}
	if r.Version != "" {
		d.Rollouts = []RolloutView{f.view(r, f.now())}
	}
	return d
}

// Sample records the versions running now in the history.
func (f *Fleet) Sample() {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Sample{Time: f.now().UTC(), Counts: map[string]map[string]int{}}
	for _, m := range f.st.Machines {
		c := s.Counts[m.Channel]
		if c == nil {
			c = map[string]int{}
			s.Counts[m.Channel] = c
		}
		c[m.Running]++
	}
	f.st.History = append(f.st.History, s)
	if len(f.st.History) > maxSamples {
		f.st.History = f.st.History[len(f.st.History)-maxSamples:]
	}
	f.dirty = true
}

// Flush writes fleet.json if anything changed since the last write.
func (f *Fleet) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.dirty {
		return nil
	}
	if err := f.saveLocked(); err != nil {
		return err
	}
	f.dirty = false
	return nil
}

func (f *Fleet) saveLocked() error {
	b, err := json.Marshal(&f.st)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(f.dir, fleetFile), b, 0o600)
}

// Forget drops a machine (its key binding too), e.g. after a reinstall
// with a new report key.
func (f *Fleet) Forget(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.st.Machines[id]; !ok {
		return false
	}
	delete(f.st.Machines, id)
	f.rebuildInstalls()
	f.dirty = true
	return true
}

// ReadRollout reads the operator's rollout of channel from a fleet state
// directory; os.ErrNotExist when there is none.
func ReadRollout(dir, channel string) (*Rollout, error) {
	if !ValidChannelName(channel) {
		return nil, fmt.Errorf("channel %q: use lowercase letters, digits, '.', '_' or '-'", channel)
	}
	b, err := os.ReadFile(filepath.Join(dir, rolloutDir, channel+".json"))
	if err != nil {
		return nil, err
	}
	var r Rollout
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("rollout %s: %v", channel, err)
	}
	return &r, nil
}

// WriteRollout validates and stores an operator's rollout (atomically; the
// server picks it up at the next request).
func WriteRollout(dir string, r *Rollout) error {
	if err := ValidateRollout(r); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, rolloutDir), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, rolloutDir, r.Channel+".json"), append(b, '\n'), 0o644)
}

// ReadHalt returns the server's halt of a channel's rollout as last written
// to fleet.json (for `pith release rollout status`).
func ReadHalt(dir, channel string) (Halt, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, fleetFile))
	if errors.Is(err, os.ErrNotExist) {
		return Halt{}, false, nil
	}
	if err != nil {
		return Halt{}, false, err
	}
	var st fleetState
	if err := json.Unmarshal(b, &st); err != nil {
		return Halt{}, false, err
	}
	h, ok := st.Halts[channel]
	return h, ok, nil
}
