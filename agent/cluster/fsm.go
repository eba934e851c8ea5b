package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// Namespace identifies a state machine in the shared log. Values are part
// of the on-disk format.
type Namespace byte

// Namespaces known today. A new subsystem takes the next free number.
const (
	NamespaceMembers  Namespace = 0
	NamespaceKV       Namespace = 1
	NamespaceSchedule Namespace = 2
)

// StateMachine is one namespace's replicated state. Apply must be
// deterministic: the same commands in the same order give the same state on
// every node (no clocks, no randomness, no map-order dependence).
type StateMachine interface {
	// Apply applies one command committed at raft index. The result is
	// returned to the proposer on the node that proposed it.
	Apply(index uint64, cmd []byte) any
	// Save writes the whole state (called with applies paused).
	Save(w io.Writer) error
	// Restore replaces the state with one written by Save.
	Restore(r io.Reader) error
}

// Capturer is a StateMachine whose snapshot is costly to write (the KV
// store): Capture copies the state while applies are paused and returns
// what writes the copy, Save's bytes, later, while applies go on. A
// StateMachine that is not one is saved while applies are paused.
type Capturer interface {
	Capture() func(io.Writer) error
}

// fsm dispatches raft log entries to namespaces.
type fsm struct {
	mu  sync.RWMutex
	sms map[Namespace]StateMachine
	// beforePersist makes the log durable first: a snapshot must never be
	// on disk ahead of the entries it covers (the leader syncs its log in
	// the background, see walsync.go).
	beforePersist func() error
	// durable, when set, returns once this node's log is fsynced through
	// an index. A leader counts its own copy toward a commit as soon as
	// it is written (its fsync runs beside replication, see walsync.go),
	// so an entry raft calls committed may still be on only one disk:
	// applying waits for this node's fsync, so nothing observable (a
	// read, a watch event, fleet state) runs ahead of a quorum's disks.
	durable func(index uint64) error
	// applied is the last entry applied here (see Node.WaitApplied).
	applied appliedIndex
	// config is the last configuration entry applied here.
	config appliedConfig
	// results of the last entries, for proposals forwarded from here.
	results results
}

// snapIndexSection is the snapshot section holding the last applied
// index. Releases that do not know it skip it like any unknown namespace.
const snapIndexSection = 0xff

func newFSM() *fsm { return &fsm{sms: map[Namespace]StateMachine{}} }

func (f *fsm) register(ns Namespace, sm StateMachine) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ns == snapIndexSection {
		return fmt.Errorf("cluster: namespace %d is reserved", ns)
	}
	if _, ok := f.sms[ns]; ok {
		return fmt.Errorf("cluster: namespace %d registered twice", ns)
	}
	f.sms[ns] = sm
	return nil
}

// ErrUnknownNamespace is the result of a command for a namespace this
// binary does not have (a newer node wrote it); every node answers the same.
var ErrUnknownNamespace = errors.New("cluster: command for an unknown namespace")

// errStopping is the result of entries left unapplied by a node that stops.
var errStopping = errors.New("cluster: member stopping")

func (f *fsm) Apply(l *raft.Log) any {
	if f.durable != nil {
		if err := f.durable(l.Index); errors.Is(err, errSyncStopped) {
			return errStopping
		} else if err != nil {
			// The log cannot be made durable: applying on would show
			// state that may be lost. etcd stops the same way.
			panic(fmt.Sprintf("raft log entry %d cannot be made durable: %v", l.Index, err))
		}
	}
	defer f.applied.set(l.Index)
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	f.mu.RLock()
	sm := f.sms[Namespace(l.Data[0])]
	f.mu.RUnlock()
	var res any = ErrUnknownNamespace
	if sm != nil {
		res = sm.Apply(l.Index, l.Data[1:])
	}
	f.results.put(l.Index, res)
	return res
}

const snapMagic = "PITHSNAP1\n"

// Snapshot takes every namespace's state as of the last applied entry.
// raft pauses applies for it, so a Capturer's state is only copied here
// and written by Persist, in raft's snapshot goroutine: a snapshot of a
// large KV store stalled every write for as long as its encoding took.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ids := make([]int, 0, len(f.sms))
	for ns := range f.sms {
		ids = append(ids, int(ns))
	}
	sort.Ints(ids)
	idx := binary.AppendUvarint(nil, f.applied.get())
	secs := []snapSection{{id: snapIndexSection, data: idx}}
	for _, id := range ids {
		sm := f.sms[Namespace(id)]
		if c, ok := sm.(Capturer); ok {
			secs = append(secs, snapSection{id: byte(id), write: c.Capture()})
			continue
		}
		var sec bytes.Buffer
		if err := sm.Save(&sec); err != nil {
			return nil, fmt.Errorf("snapshot namespace %d: %w", id, err)
		}
		secs = append(secs, snapSection{id: byte(id), data: sec.Bytes()})
	}
	return &fsmSnapshot{sections: secs, beforePersist: f.beforePersist}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReader(rc)
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapMagic {
		return errors.New("cluster: snapshot has no pith header")
	}
	f.config.forget()
	f.mu.RLock()
	defer f.mu.RUnlock()
	var applied uint64
	for {
		id, err := br.ReadByte()
		if err == io.EOF {
			f.applied.set(applied)
			return nil
		}
		if err != nil {
			return err
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return fmt.Errorf("cluster: snapshot section %d: %w", id, err)
		}
		sec := io.LimitReader(br, int64(n))
		if id == snapIndexSection {
			b, err := io.ReadAll(sec)
			if err != nil || uint64(len(b)) != n {
				return errors.New("cluster: snapshot index section truncated")
			}
			idx, k := binary.Uvarint(b)
			if k <= 0 {
				return errors.New("cluster: snapshot index section is not a number")
			}
			applied = idx
			continue
		}
		sm := f.sms[Namespace(id)]
		if sm == nil {
			// State of a namespace this binary lacks: skip it.
			if c, err := io.Copy(io.Discard, sec); err != nil || uint64(c) != n {
				return fmt.Errorf("cluster: snapshot section %d truncated", id)
			}
			continue
		}
		if err := sm.Restore(sec); err != nil {
			return fmt.Errorf("cluster: restore namespace %d: %w", id, err)
		}
		if _, err := io.Copy(io.Discard, sec); err != nil {
			return err
		}
	}
}

// snapSection is one section of a snapshot: its bytes, or what writes them.
type snapSection struct {
	id    byte
	data  []byte
	write func(io.Writer) error
}

type fsmSnapshot struct {
	sections      []snapSection
	beforePersist func() error
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.persist(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// persist writes the snapshot: the magic, then each section as its id,
// its length (uvarint) and its bytes.
func (s *fsmSnapshot) persist(w io.Writer) error {
	if s.beforePersist != nil {
		if err := s.beforePersist(); err != nil {
			return err
		}
	}
	bw := bufio.NewWriter(w)
	bw.WriteString(snapMagic)
	for _, sec := range s.sections {
		data := sec.data
		if sec.write != nil {
			var b bytes.Buffer
			if err := sec.write(&b); err != nil {
				return fmt.Errorf("snapshot namespace %d: %w", sec.id, err)
			}
			data = b.Bytes()
		}
		bw.WriteByte(sec.id)
		bw.Write(binary.AppendUvarint(nil, uint64(len(data))))
		bw.Write(data)
	}
	return bw.Flush()
}

func (s *fsmSnapshot) Release() {}
