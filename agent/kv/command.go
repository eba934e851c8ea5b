package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op is a replicated store operation.
type Op byte

// Operations carried in the raft log. Numbers are part of the on-disk
// format: never renumber, only append.
const (
	OpSet Op = iota + 1
	OpCreate
	OpCreateUnique
	OpUpdate
	OpCompareAndSwap
	OpDelete
	OpCompareAndDelete
	OpExpire
	// OpGet is a read that goes through the log (quorum=true when the
	// leader cannot confirm its lease); it changes nothing.
	OpGet
)

// Command is one store operation as proposed to raft. Expire is absolute
// (Unix nanoseconds, 0 = permanent) and fixed by the node that accepted the
// request, so applying it is deterministic.
type Command struct {
	Op        Op
	Path      string
	Value     string
	PrevValue string
	PrevIndex uint64
	Expire    int64
	Dir       bool
	Recursive bool
	Sorted    bool
	Refresh   bool
}

const (
	flagDir = 1 << iota
	flagRecursive
	flagSorted
	flagRefresh
)

// Marshal encodes c compactly (one allocation, no reflection): commands
// are on the hot path of every write.
func (c *Command) Marshal() []byte {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+len(c.Path)+len(c.Value)+len(c.PrevValue)+2*binary.MaxVarintLen64)
	return c.AppendTo(b)
}

// AppendTo appends the encoding of c to b.
func (c *Command) AppendTo(b []byte) []byte {
	var flags byte
	if c.Dir {
		flags |= flagDir
	}
	if c.Recursive {
		flags |= flagRecursive
	}
	if c.Sorted {
		flags |= flagSorted
	}
	if c.Refresh {
		flags |= flagRefresh
	}
	b = append(b, byte(c.Op), flags)
	b = binary.AppendUvarint(b, uint64(len(c.Path)))
	b = append(b, c.Path...)
	b = binary.AppendUvarint(b, uint64(len(c.Value)))
	b = append(b, c.Value...)
	b = binary.AppendUvarint(b, uint64(len(c.PrevValue)))
	b = append(b, c.PrevValue...)
	b = binary.AppendUvarint(b, c.PrevIndex)
	b = binary.AppendVarint(b, c.Expire)
	return b
}

var errShortCommand = errors.New("kv command: truncated")

// UnmarshalCommand decodes a command written by Marshal.
func UnmarshalCommand(b []byte) (*Command, error) {
	if len(b) < 2 {
		return nil, errShortCommand
	}
	c := &Command{Op: Op(b[0])}
	flags := b[1]
	c.Dir, c.Recursive, c.Sorted, c.Refresh = flags&flagDir != 0, flags&flagRecursive != 0, flags&flagSorted != 0, flags&flagRefresh != 0
	b = b[2:]
	str := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return "", errShortCommand
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, nil
	}
	var err error
	if c.Path, err = str(); err != nil {
		return nil, err
	}
	if c.Value, err = str(); err != nil {
		return nil, err
	}
	if c.PrevValue, err = str(); err != nil {
		return nil, err
	}
	var k int
	if c.PrevIndex, k = binary.Uvarint(b); k <= 0 {
		return nil, errShortCommand
	}
	b = b[k:]
	if c.Expire, k = binary.Varint(b); k <= 0 {
		return nil, errShortCommand
	}
	return c, nil
}

// Result is what applying a command produced: an event, or an error.
// For OpExpire, Events lists every key that expired.
type Result struct {
	Event  *Event
	Events []*Event
	Err    error
}

// Exec executes a decoded command against the store.
func (s *Store) Exec(c *Command) Result {
	var e *Event
	var err error
	switch c.Op {
	case OpSet:
		e, err = s.Set(c.Path, c.Dir, c.Value, c.Expire, c.Refresh)
	case OpCreate:
		e, err = s.Create(c.Path, c.Dir, c.Value, false, c.Expire)
	case OpCreateUnique:
		e, err = s.Create(c.Path, c.Dir, c.Value, true, c.Expire)
	case OpUpdate:
		e, err = s.Update(c.Path, c.Value, c.Expire, c.Refresh)
	case OpCompareAndSwap:
		e, err = s.CompareAndSwap(c.Path, c.PrevValue, c.PrevIndex, c.Value, c.Expire, c.Refresh)
	case OpDelete:
		e, err = s.Delete(c.Path, c.Dir, c.Recursive)
	case OpCompareAndDelete:
		e, err = s.CompareAndDelete(c.Path, c.PrevValue, c.PrevIndex)
	case OpExpire:
		return Result{Events: s.DeleteExpired(c.Expire)}
	case OpGet:
		e, err = s.Get(c.Path, c.Recursive, c.Sorted)
	default:
		// A newer binary's operation: refuse it the same way on every
		// replica rather than diverge.
		err = NewError(EcodeRaftInternal, fmt.Sprintf("unknown kv operation %d", c.Op), s.Index())
	}
	return Result{Event: e, Err: err}
}

// Apply decodes and executes a command from the raft log; it makes Store a
// cluster state machine (the raft index is not needed: the store keeps its
// own etcd index). The result is a Result.
func (s *Store) Apply(_ uint64, b []byte) any {
	c, err := UnmarshalCommand(b)
	if err != nil {
		return Result{Err: NewError(EcodeRaftInternal, err.Error(), s.Index())}
	}
	return s.Exec(c)
}
