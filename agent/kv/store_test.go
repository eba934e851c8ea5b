package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestStore() *Store {
	s := NewStore(Options{HistorySize: 8})
	s.now = func() time.Time { return t0 }
	return s
}

func errCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.ErrorCode
	}
	if err != nil {
		return -1
	}
	return 0
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestStoreOps runs sequences of commands and checks each result's action,
// error code, cause and JSON, in etcd v2's exact wire form.
func TestStoreOps(t *testing.T) {
	exp := t0.Add(10*time.Second + time.Millisecond).UnixNano()
	type step struct {
		cmd    Command
		code   int
		cause  string
		action string
		json   string // expected event JSON (empty: not checked)
		index  uint64 // expected store index afterwards
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"set then get", []step{
			{cmd: Command{Op: OpSet, Path: "/foo", Value: "bar"}, action: "set", index: 1,
				json: `{"action":"set","node":{"key":"/foo","value":"bar","modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpGet, Path: "/foo"}, action: "get", index: 1,
				json: `{"action":"get","node":{"key":"/foo","value":"bar","modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpSet, Path: "foo", Value: "baz"}, action: "set", index: 2,
				json: `{"action":"set","node":{"key":"/foo","value":"baz","modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/foo","value":"bar","modifiedIndex":1,"createdIndex":1}}`},
		}},
		{"empty value is kept", []step{
			{cmd: Command{Op: OpSet, Path: "/e"}, action: "set", index: 1,
				json: `{"action":"set","node":{"key":"/e","value":"","modifiedIndex":1,"createdIndex":1}}`},
		}},
		{"missing key", []step{
			{cmd: Command{Op: OpGet, Path: "/a/b/c"}, code: EcodeKeyNotFound, cause: "/a"},
			{cmd: Command{Op: OpSet, Path: "/a/b/c", Value: "1"}, action: "set", index: 1},
			{cmd: Command{Op: OpGet, Path: "/a/x"}, code: EcodeKeyNotFound, cause: "/a/x", index: 1},
			{cmd: Command{Op: OpGet, Path: "/a/b/c/d"}, code: EcodeNotDir, cause: "/a/b/c", index: 1},
		}},
		{"intermediate dirs share the index", []step{
			{cmd: Command{Op: OpSet, Path: "/d/k", Value: "v"}, index: 1, action: "set"},
			{cmd: Command{Op: OpGet, Path: "/d"}, action: "get", index: 1,
				json: `{"action":"get","node":{"key":"/d","dir":true,"nodes":[{"key":"/d/k","value":"v","modifiedIndex":1,"createdIndex":1}],"modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpGet, Path: "/"}, action: "get", index: 1,
				json: `{"action":"get","node":{"dir":true,"nodes":[{"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1}]}}`},
			{cmd: Command{Op: OpGet, Path: "/", Recursive: true}, action: "get", index: 1,
				json: `{"action":"get","node":{"dir":true,"nodes":[{"key":"/d","dir":true,"nodes":[{"key":"/d/k","value":"v","modifiedIndex":1,"createdIndex":1}],"modifiedIndex":1,"createdIndex":1}]}}`},
		}},
		{"file in the way", []step{
			{cmd: Command{Op: OpSet, Path: "/f", Value: "v"}, index: 1, action: "set"},
			{cmd: Command{Op: OpSet, Path: "/f/g", Value: "v"}, code: EcodeNotDir, cause: "/f", index: 1},
			{cmd: Command{Op: OpCreate, Path: "/f/g/h", Value: "v"}, code: EcodeNotDir, cause: "/f", index: 1},
			{cmd: Command{Op: OpCreateUnique, Path: "/f", Value: "v"}, code: EcodeNotDir, cause: "/f", index: 1},
		}},
		{"set on a dir", []step{
			{cmd: Command{Op: OpSet, Path: "/d", Dir: true}, index: 1, action: "set",
				json: `{"action":"set","node":{"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpSet, Path: "/d", Value: "x"}, code: EcodeNotFile, cause: "/d", index: 1},
			{cmd: Command{Op: OpSet, Path: "/d", Dir: true}, code: EcodeNotFile, cause: "/d", index: 1},
		}},
		{"create", []step{
			{cmd: Command{Op: OpCreate, Path: "/c", Value: "1"}, action: "create", index: 1,
				json: `{"action":"create","node":{"key":"/c","value":"1","modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpCreate, Path: "/c", Value: "2"}, code: EcodeNodeExist, cause: "/c", index: 1},
			{cmd: Command{Op: OpCreate, Path: "/", Dir: true}, code: EcodeRootROnly, cause: "/", index: 1},
		}},
		{"in-order keys", []step{
			{cmd: Command{Op: OpCreateUnique, Path: "/q", Value: "a"}, action: "create", index: 1,
				json: `{"action":"create","node":{"key":"/q/00000000000000000001","value":"a","modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpCreateUnique, Path: "/q", Value: "b"}, action: "create", index: 2},
			{cmd: Command{Op: OpGet, Path: "/q", Sorted: true}, action: "get", index: 2,
				json: `{"action":"get","node":{"key":"/q","dir":true,"nodes":[{"key":"/q/00000000000000000001","value":"a","modifiedIndex":1,"createdIndex":1},{"key":"/q/00000000000000000002","value":"b","modifiedIndex":2,"createdIndex":2}],"modifiedIndex":1,"createdIndex":1}}`},
		}},
		{"update", []step{
			{cmd: Command{Op: OpUpdate, Path: "/u", Value: "1"}, code: EcodeKeyNotFound, cause: "/u"},
			{cmd: Command{Op: OpSet, Path: "/u", Value: "1"}, index: 1, action: "set"},
			{cmd: Command{Op: OpUpdate, Path: "/u", Value: "2"}, action: "update", index: 2,
				json: `{"action":"update","node":{"key":"/u","value":"2","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/u","value":"1","modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpUpdate, Path: "/", Value: "2"}, code: EcodeRootROnly, cause: "/", index: 2},
			{cmd: Command{Op: OpSet, Path: "/ud", Dir: true}, index: 3, action: "set"},
			{cmd: Command{Op: OpUpdate, Path: "/ud", Value: "x"}, code: EcodeNotFile, cause: "/ud", index: 3},
			{cmd: Command{Op: OpUpdate, Path: "/ud", Expire: exp}, action: "update", index: 4,
				json: `{"action":"update","node":{"key":"/ud","dir":true,"expiration":"2026-01-02T03:04:15.001Z","ttl":11,"modifiedIndex":4,"createdIndex":3},"prevNode":{"key":"/ud","dir":true,"modifiedIndex":3,"createdIndex":3}}`},
		}},
		{"compare and swap", []step{
			{cmd: Command{Op: OpCompareAndSwap, Path: "/k", PrevValue: "a", Value: "b"}, code: EcodeKeyNotFound, cause: "/k"},
			{cmd: Command{Op: OpSet, Path: "/k", Value: "a"}, index: 1, action: "set"},
			{cmd: Command{Op: OpCompareAndSwap, Path: "/k", PrevValue: "x", Value: "b"}, code: EcodeTestFailed, cause: "[x != a]", index: 1},
			{cmd: Command{Op: OpCompareAndSwap, Path: "/k", PrevIndex: 7, Value: "b"}, code: EcodeTestFailed, cause: "[7 != 1]", index: 1},
			{cmd: Command{Op: OpCompareAndSwap, Path: "/k", PrevValue: "x", PrevIndex: 7, Value: "b"}, code: EcodeTestFailed, cause: "[x != a] [7 != 1]", index: 1},
			{cmd: Command{Op: OpCompareAndSwap, Path: "/k", PrevValue: "a", PrevIndex: 1, Value: "b"}, action: "compareAndSwap", index: 2,
				json: `{"action":"compareAndSwap","node":{"key":"/k","value":"b","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/k","value":"a","modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpSet, Path: "/kd", Dir: true}, index: 3, action: "set"},
			{cmd: Command{Op: OpCompareAndSwap, Path: "/kd", PrevValue: "a", Value: "b"}, code: EcodeNotFile, cause: "/kd", index: 3},
		}},
		{"delete", []step{
			{cmd: Command{Op: OpDelete, Path: "/x"}, code: EcodeKeyNotFound, cause: "/x"},
			{cmd: Command{Op: OpSet, Path: "/d/a", Value: "1"}, index: 1, action: "set"},
			{cmd: Command{Op: OpDelete, Path: "/d"}, code: EcodeNotFile, cause: "/d", index: 1},
			{cmd: Command{Op: OpDelete, Path: "/d", Dir: true}, code: EcodeDirNotEmpty, cause: "/d", index: 1},
			{cmd: Command{Op: OpDelete, Path: "/"}, code: EcodeRootROnly, cause: "/", index: 1},
			{cmd: Command{Op: OpDelete, Path: "/d/a"}, action: "delete", index: 2,
				json: `{"action":"delete","node":{"key":"/d/a","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/d/a","value":"1","modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpDelete, Path: "/d", Dir: true}, action: "delete", index: 3,
				json: `{"action":"delete","node":{"key":"/d","dir":true,"modifiedIndex":3,"createdIndex":1},"prevNode":{"key":"/d","dir":true,"modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpSet, Path: "/r/a/b", Value: "1"}, index: 4, action: "set"},
			{cmd: Command{Op: OpDelete, Path: "/r", Recursive: true}, action: "delete", index: 5},
			{cmd: Command{Op: OpGet, Path: "/r/a/b"}, code: EcodeKeyNotFound, cause: "/r", index: 5},
		}},
		{"compare and delete", []step{
			{cmd: Command{Op: OpSet, Path: "/k", Value: "a"}, index: 1, action: "set"},
			{cmd: Command{Op: OpCompareAndDelete, Path: "/k", PrevValue: "b"}, code: EcodeTestFailed, cause: "[b != a]", index: 1},
			{cmd: Command{Op: OpCompareAndDelete, Path: "/k", PrevIndex: 1}, action: "compareAndDelete", index: 2,
				json: `{"action":"compareAndDelete","node":{"key":"/k","modifiedIndex":2,"createdIndex":1},"prevNode":{"key":"/k","value":"a","modifiedIndex":1,"createdIndex":1}}`},
		}},
		{"hidden keys are not listed", []step{
			{cmd: Command{Op: OpSet, Path: "/h/_secret", Value: "s"}, index: 1, action: "set"},
			{cmd: Command{Op: OpSet, Path: "/h/seen", Value: "s"}, index: 2, action: "set"},
			{cmd: Command{Op: OpGet, Path: "/h"}, action: "get", index: 2,
				json: `{"action":"get","node":{"key":"/h","dir":true,"nodes":[{"key":"/h/seen","value":"s","modifiedIndex":2,"createdIndex":2}],"modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpGet, Path: "/h/_secret"}, action: "get", index: 2},
		}},
		{"ttl and expiry", []step{
			{cmd: Command{Op: OpSet, Path: "/t", Value: "v", Expire: exp}, action: "set", index: 1,
				json: `{"action":"set","node":{"key":"/t","value":"v","expiration":"2026-01-02T03:04:15.001Z","ttl":11,"modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpSet, Path: "/t", Expire: exp + 1, Refresh: true}, action: "set", index: 2,
				json: `{"action":"set","node":{"key":"/t","value":"v","expiration":"2026-01-02T03:04:15.001000001Z","ttl":11,"modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/t","value":"v","expiration":"2026-01-02T03:04:15.001Z","ttl":11,"modifiedIndex":1,"createdIndex":1}}`},
			{cmd: Command{Op: OpExpire, Expire: exp}, index: 2},
			{cmd: Command{Op: OpGet, Path: "/t"}, action: "get", index: 2},
			{cmd: Command{Op: OpExpire, Expire: exp + 1}, index: 3},
			{cmd: Command{Op: OpGet, Path: "/t"}, code: EcodeKeyNotFound, cause: "/t", index: 3},
			{cmd: Command{Op: OpSet, Path: "/p", Value: "v", Expire: exp}, index: 4, action: "set"},
			{cmd: Command{Op: OpUpdate, Path: "/p", Value: "w"}, index: 5, action: "update"},
			{cmd: Command{Op: OpExpire, Expire: exp * 2}, index: 5},
			{cmd: Command{Op: OpGet, Path: "/p"}, action: "get", index: 5},
		}},
		{"refresh needs an existing key", []step{
			{cmd: Command{Op: OpSet, Path: "/n", Expire: exp, Refresh: true}, code: EcodeKeyNotFound, cause: "/n"},
		}},
		{"expire a directory with children", []step{
			{cmd: Command{Op: OpSet, Path: "/ed", Dir: true, Expire: exp}, index: 1, action: "set"},
			{cmd: Command{Op: OpSet, Path: "/ed/k", Value: "v", Expire: exp + 5}, index: 2, action: "set"},
			{cmd: Command{Op: OpExpire, Expire: exp}, index: 3},
			{cmd: Command{Op: OpGet, Path: "/ed/k"}, code: EcodeKeyNotFound, cause: "/ed", index: 3},
			{cmd: Command{Op: OpExpire, Expire: exp + 10}, index: 3},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore()
			for i, st := range tc.steps {
				r := s.Exec(&st.cmd)
				if got := errCode(r.Err); got != st.code {
					t.Fatalf("step %d %+v: error code %d (%v), want %d", i, st.cmd, got, r.Err, st.code)
				}
				if st.code != 0 {
					e := r.Err.(*Error)
					if e.Cause != st.cause || e.Message != errorMessages[st.code] || e.Index != s.Index() {
						t.Fatalf("step %d: error %+v, want cause %q index %d", i, e, st.cause, s.Index())
					}
				}
				if st.action != "" && (r.Event == nil || r.Event.Action != st.action) {
					t.Fatalf("step %d: event %s, want action %s", i, js(r.Event), st.action)
				}
				if st.json != "" && js(r.Event) != st.json {
					t.Fatalf("step %d:\n got %s\nwant %s", i, js(r.Event), st.json)
				}
				if s.Index() != st.index {
					t.Fatalf("step %d: index %d, want %d", i, s.Index(), st.index)
				}
				if r.Event != nil && st.cmd.Op != OpGet && r.Event.EtcdIndex != s.Index() {
					t.Fatalf("step %d: EtcdIndex %d, store index %d", i, r.Event.EtcdIndex, s.Index())
				}
			}
		})
	}
}

func TestErrorJSON(t *testing.T) {
	cases := []struct {
		err    *Error
		status int
		body   string
	}{
		{NewError(EcodeKeyNotFound, "/foo", 7), 404, `{"errorCode":100,"message":"Key not found","cause":"/foo","index":7}`},
		{NewError(EcodeTestFailed, "[a != b]", 3), 412, `{"errorCode":101,"message":"Compare failed","cause":"[a != b]","index":3}`},
		{NewError(EcodeNodeExist, "/x", 1), 412, `{"errorCode":105,"message":"Key already exists","cause":"/x","index":1}`},
		{NewError(EcodeNotFile, "/d", 1), 403, `{"errorCode":102,"message":"Not a file","cause":"/d","index":1}`},
		{NewError(EcodeDirNotEmpty, "/d", 1), 403, `{"errorCode":108,"message":"Directory not empty","cause":"/d","index":1}`},
		{NewError(EcodeNotDir, "/f", 1), 400, `{"errorCode":104,"message":"Not a directory","cause":"/f","index":1}`},
		{NewError(EcodeRootROnly, "/", 0), 400, `{"errorCode":107,"message":"Root is read only","cause":"/","index":0}`},
		{NewError(EcodeTTLNaN, `invalid value for "ttl"`, 0), 400, `{"errorCode":202,"message":"The given TTL in POST form is not a number","cause":"invalid value for \"ttl\"","index":0}`},
		{NewError(EcodeEventIndexCleared, "the requested history has been cleared [5/1]", 9), 400, `{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [5/1]","index":9}`},
		{NewError(EcodeRaftInternal, "x", 0), 500, `{"errorCode":300,"message":"Raft Internal Error","cause":"x","index":0}`},
	}
	for _, tc := range cases {
		if tc.err.StatusCode() != tc.status {
			t.Errorf("%d: status %d, want %d", tc.err.ErrorCode, tc.err.StatusCode(), tc.status)
		}
		if got := js(tc.err); got != tc.body {
			t.Errorf("got %s\nwant %s", got, tc.body)
		}
	}
}

func TestWatch(t *testing.T) {
	cases := []struct {
		name      string
		before    []Command
		key       string
		recursive bool
		since     uint64
		after     []Command
		wantKey   string // key of the first event delivered ("" = none)
		wantIdx   uint64
		wantCode  int
	}{
		{name: "future event on the key", key: "/a", after: []Command{{Op: OpSet, Path: "/b"}, {Op: OpSet, Path: "/a", Value: "1"}}, wantKey: "/a", wantIdx: 2},
		{name: "child needs recursive", key: "/d", after: []Command{{Op: OpSet, Path: "/d/x"}}, wantKey: ""},
		{name: "recursive sees child", key: "/d", recursive: true, after: []Command{{Op: OpSet, Path: "/d/x"}}, wantKey: "/d/x", wantIdx: 1},
		{name: "recursive skips hidden", key: "/d", recursive: true, after: []Command{{Op: OpSet, Path: "/d/_h"}, {Op: OpSet, Path: "/d/v"}}, wantKey: "/d/v", wantIdx: 2},
		{name: "history hit", before: []Command{{Op: OpSet, Path: "/a", Value: "1"}, {Op: OpSet, Path: "/a", Value: "2"}}, key: "/a", since: 2, wantKey: "/a", wantIdx: 2},
		{name: "history first match", before: []Command{{Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/b"}, {Op: OpSet, Path: "/a"}}, key: "/a", since: 2, wantKey: "/a", wantIdx: 3},
		{name: "dir delete reaches child watcher", before: []Command{{Op: OpSet, Path: "/d/x"}}, key: "/d/x", after: []Command{{Op: OpDelete, Path: "/d", Recursive: true}}, wantKey: "/d", wantIdx: 2},
		{name: "dir delete in history skips a sibling sharing its prefix", before: []Command{{Op: OpSet, Path: "/d/x"}, {Op: OpDelete, Path: "/d", Recursive: true}}, key: "/dx", since: 2, after: []Command{{Op: OpSet, Path: "/dx"}}, wantKey: "/dx", wantIdx: 3},
		{name: "dir delete in history", before: []Command{{Op: OpSet, Path: "/d/x"}, {Op: OpDelete, Path: "/d", Recursive: true}}, key: "/d/x", since: 2, wantKey: "/d", wantIdx: 2},
		{name: "cleared history", before: []Command{{Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/a"}, {Op: OpSet, Path: "/a"}}, key: "/a", since: 1, wantCode: EcodeEventIndexCleared},
		{name: "refresh not delivered", before: []Command{{Op: OpSet, Path: "/a", Value: "v", Expire: 5}}, key: "/a", after: []Command{{Op: OpSet, Path: "/a", Expire: 6, Refresh: true}, {Op: OpDelete, Path: "/a"}}, wantKey: "/a", wantIdx: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore()
			for _, c := range tc.before {
				s.Exec(&c)
			}
			w, err := s.Watch(tc.key, tc.recursive, false, tc.since)
			if errCode(err) != tc.wantCode {
				t.Fatalf("watch error %v, want code %d", err, tc.wantCode)
			}
			if err != nil {
				if e := err.(*Error); e.Index != s.Index() {
					t.Fatalf("error index %d, want %d", e.Index, s.Index())
				}
				return
			}
			for _, c := range tc.after {
				s.Exec(&c)
			}
			select {
			case e := <-w.EventChan():
				if e == nil || e.Node.Key != tc.wantKey || e.Index() != tc.wantIdx {
					t.Fatalf("event %s, want key %q index %d", js(e), tc.wantKey, tc.wantIdx)
				}
			default:
				if tc.wantKey != "" {
					t.Fatalf("no event, want %s", tc.wantKey)
				}
			}
			w.Remove()
			w.Remove()
			if n := s.hub.count.Load(); n != 0 {
				t.Fatalf("%d watchers left", n)
			}
		})
	}
}

// A streaming watch that starts in the history gets every matching event
// since waitIndex, then the live ones; a long backlog ends the stream
// after a full buffer instead of skipping events.
func TestStreamWatchReplaysHistory(t *testing.T) {
	s := newTestStore()
	for _, p := range []string{"/a", "/b", "/a", "/a"} {
		s.Set(p, false, "v", 0, false)
	}
	w, err := s.Watch("/a", false, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.Set("/a", false, "live", 0, false)
	// Delivery is synchronous (history at Watch, live events at Set), so
	// whatever is not buffered now never comes.
	var got []uint64
	for len(got) < 4 {
		select {
		case e := <-w.EventChan():
			got = append(got, e.Index())
		default:
			t.Fatalf("stream events at %v, want [1 3 4 5]", got)
		}
	}
	if fmt.Sprint(got) != "[1 3 4 5]" {
		t.Fatalf("stream events at %v, want [1 3 4 5]", got)
	}
	w.Remove()

	s = NewStore(Options{}) // a history longer than the buffer
	for i := 0; i < watcherChanSize+10; i++ {
		s.Set("/k", false, "v", 0, false)
	}
	w, err = s.Watch("/k", false, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	var idx []uint64
	for e := range w.EventChan() {
		idx = append(idx, e.Index())
	}
	if len(idx) != watcherChanSize || idx[0] != 1 || idx[len(idx)-1] != watcherChanSize {
		t.Fatalf("backlog delivered %d events (%v...), want 1..%d then the end", len(idx), idx[:min(3, len(idx))], watcherChanSize)
	}
	if n := s.hub.count.Load(); n != 0 {
		t.Fatalf("%d watchers registered after the stream ended", n)
	}
}

func TestWatcherLimitAndSlowReader(t *testing.T) {
	s := NewStore(Options{MaxWatchers: 2})
	w1, _ := s.Watch("/a", false, true, 0)
	if _, err := s.Watch("/b", false, false, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Watch("/c", false, false, 0); err != ErrTooManyWatchers {
		t.Fatalf("third watcher: %v, want ErrTooManyWatchers", err)
	}
	// A streaming watcher that never reads is dropped once its buffer is
	// full instead of blocking writers.
	for i := 0; i < watcherChanSize+1; i++ {
		s.Set("/a", false, "v", 0, false)
	}
	n := 0
	for range w1.EventChan() {
		n++
	}
	if n != watcherChanSize {
		t.Fatalf("got %d events before close, want %d", n, watcherChanSize)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := newTestStore()
	for _, c := range []Command{
		{Op: OpSet, Path: "/a/b", Value: "1"},
		{Op: OpSet, Path: "/a/c", Value: "2", Expire: 100},
		{Op: OpCreateUnique, Path: "/q", Value: "x"},
		{Op: OpSet, Path: "/d", Dir: true, Expire: 50},
		{Op: OpSet, Path: "/a/b", Value: "3"},
	} {
		if r := s.Exec(&c); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	r := newTestStore()
	r.Set("/junk", false, "j", 0, false)
	if err := r.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/", "/a", "/q"} {
		a, _ := s.Get(p, true, true)
		b, _ := r.Get(p, true, true)
		if js(a) != js(b) || a.EtcdIndex != b.EtcdIndex {
			t.Fatalf("%s: %s != %s", p, js(a), js(b))
		}
	}
	if s.NextExpiry() != r.NextExpiry() || r.NextExpiry() != 50 {
		t.Fatalf("expiry %d vs %d", s.NextExpiry(), r.NextExpiry())
	}
	// The history came along: a watch from index 1 sees /a/b's first set.
	w, err := r.Watch("/a/b", false, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	if e := <-w.EventChan(); e.Index() != 1 {
		t.Fatalf("history event %s", js(e))
	}
	if evs := r.DeleteExpired(100); len(evs) != 2 || r.Index() != 7 {
		t.Fatalf("expired %d keys, index %d", len(evs), r.Index())
	}
	if err := r.Restore(bytes.NewReader([]byte("{"))); err == nil {
		t.Fatal("truncated snapshot accepted")
	}
}

func TestCommandRoundTrip(t *testing.T) {
	cases := []Command{
		{Op: OpSet, Path: "/a", Value: "b"},
		{Op: OpCompareAndSwap, Path: "/a/é", Value: string(make([]byte, 300)), PrevValue: "p", PrevIndex: 1 << 40, Expire: -5, Dir: true, Recursive: true, Sorted: true, Refresh: true},
		{Op: OpExpire, Expire: 1 << 62},
	}
	for _, c := range cases {
		b := c.Marshal()
		got, err := UnmarshalCommand(b)
		if err != nil || *got != c {
			t.Fatalf("round trip %+v -> %+v, %v", c, got, err)
		}
		for i := 0; i < len(b); i++ {
			if _, err := UnmarshalCommand(b[:i]); err == nil {
				t.Fatalf("truncated command (%d of %d bytes) accepted", i, len(b))
			}
		}
	}
}

func TestCompareDepthFirst(t *testing.T) {
	// Sorted as a depth-first walk visiting children by name lists them.
	want := []string{"/a", "/a/b", "/a/b/c", "/a/b-", "/a/bc", "/a-b", "/a-b/x", "/ab", "/b"}
	for i := range want {
		for j := range want {
			got := compareDepthFirst(want[i], want[j])
			if (got < 0) != (i < j) || (got == 0) != (i == j) {
				t.Errorf("compareDepthFirst(%q, %q) = %d, want the sign of %d", want[i], want[j], got, i-j)
			}
		}
	}
}

// A capture is the store at Capture: writes after it change nothing in
// what it writes, and it writes what Save would have written then.
func TestCaptureIsPointInTime(t *testing.T) {
	s := newTestStore()
	for _, p := range []string{"/a-b/x", "/a/b/c", "/ab", "/a/bc"} {
		if r := s.Exec(&Command{Op: OpSet, Path: p, Value: p}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	var before bytes.Buffer
	if err := s.Save(&before); err != nil {
		t.Fatal(err)
	}
	write := s.Capture()
	for _, c := range []Command{{Op: OpSet, Path: "/a/b/c", Value: "changed"}, {Op: OpDelete, Path: "/ab"}, {Op: OpSet, Path: "/new", Value: "n"}} {
		if r := s.Exec(&c); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	var captured bytes.Buffer
	if err := write(&captured); err != nil {
		t.Fatal(err)
	}
	if captured.String() != before.String() {
		t.Fatalf("the capture wrote\n%s\nwant the store as it was at Capture\n%s", captured.String(), before.String())
	}
	var snap snapshot
	if err := json.Unmarshal(captured.Bytes(), &snap); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, n := range snap.Nodes {
		paths = append(paths, n.Path)
	}
	// Parents before children, siblings by name (Restore needs the first).
	if want := []string{"/a", "/a/b", "/a/b/c", "/a/bc", "/a-b", "/a-b/x", "/ab"}; !slices.Equal(paths, want) {
		t.Fatalf("snapshot nodes %v, want %v", paths, want)
	}
}
