// Package kvcheck records what clients of an etcd v2 KV saw and checks it:
// a porcupine model of the keys as registers (put, compare-and-swap, quorum
// get), per-member sessions for plain reads (read-your-writes, monotonic
// reads on the member a client is pinned to, as etcd's v2 client pins
// one), and unique keys whose put was acknowledged (none may be lost). The
// multi-process tests (agent/cluster) and the VM power-cut test (e2e) drive
// the same load through it.
package kvcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Input is one operation on a register: a put, a compare-and-swap from
// Prev, or (neither) a quorum get.
type Input struct {
	Put   bool
	CAS   bool
	Key   string
	Value string
	Prev  string
}

// Model: each key is a register; a get returns the last written value (""
// when absent); a compare-and-swap writes Value only when the register
// holds Prev. CAS outputs are "ok", "fail" or "?" (unknown).
var Model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(Input).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(Input)
		switch {
		case in.Put:
			return true, in.Value
		case in.CAS:
			match := state.(string) == in.Prev
			switch output.(string) {
			case "ok":
				return match, in.Value
			case "fail":
				return !match, state
			default: // unknown: it took effect if it could
				if match {
					return true, in.Value
				}
				return true, state
			}
		}
		return output.(string) == state.(string), state
	},
	Equal: func(a, b any) bool { return a == b },
	DescribeOperation: func(input, output any) string {
		in := input.(Input)
		switch {
		case in.Put:
			return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		case in.CAS:
			return fmt.Sprintf("cas(%s, %s -> %s) %v", in.Key, in.Prev, in.Value, output)
		}
		return fmt.Sprintf("get(%s) -> %v", in.Key, output)
	},
}

// Unknown is the Return of an operation whose outcome is unknown: it may
// take effect at any later time.
const Unknown = math.MaxInt64

// PruneUnknown drops writes of unknown outcome whose value no read
// returned, on keys where no compare-and-swap failed: such a write can
// always be linearized after everything else, so removing it keeps the
// check exact while sparing porcupine an open-ended operation. (A failed
// CAS might be explained only by an unobserved write, so those keys keep
// every write.)
func PruneUnknown(ops []porcupine.Operation) []porcupine.Operation {
	seen := map[string]bool{}
	casFailed := map[string]bool{}
	for _, op := range ops {
		in := op.Input.(Input)
		switch {
		case !in.Put && !in.CAS:
			seen[in.Key+"="+op.Output.(string)] = true
		case in.CAS && op.Output.(string) == "fail":
			casFailed[in.Key] = true
		}
	}
	out := ops[:0:0]
	for _, op := range ops {
		in := op.Input.(Input)
		if (in.Put || in.CAS) && op.Return == Unknown && !seen[in.Key+"="+in.Value] && !casFailed[in.Key] {
			continue
		}
		out = append(out, op)
	}
	return out
}

// Result is what Check found.
type Result struct {
	Checked, Unknown int // operations given to porcupine, of which of unknown outcome
	Linearizable     bool
}

func (r Result) String() string {
	return fmt.Sprintf("%d operations (%d of unknown outcome) linearizable=%v", r.Checked, r.Unknown, r.Linearizable)
}

// Check prunes ops and checks them against Model.
func Check(ops []porcupine.Operation) Result {
	checked := PruneUnknown(ops)
	r := Result{Checked: len(checked)}
	for _, op := range checked {
		if op.Return == Unknown {
			r.Unknown++
		}
	}
	r.Linearizable = porcupine.CheckOperations(Model, checked)
	return r
}

// History is what the clients of a Load saw.
type History struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
	acked []string
	// outcomes counts answers by kind, for the log.
	outcomes map[string]int
	// stale lists plain reads that broke a client's session on its member.
	stale []string
}

// NewHistory starts the history's clock.
func NewHistory() *History {
	return &History{start: time.Now(), outcomes: map[string]int{}}
}

func (h *History) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *History) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *History) outcome(kind string) {
	h.mu.Lock()
	h.outcomes[kind]++
	h.mu.Unlock()
}

// Count is the number of recorded register operations.
func (h *History) Count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Ops is a copy of the register operations recorded so far.
func (h *History) Ops() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// Acked lists the unique keys whose put was acknowledged.
func (h *History) Acked() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.acked...)
}

// Outcomes counts answers by kind (a summary for logs).
func (h *History) Outcomes() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := make(map[string]int, len(h.outcomes))
	for k, v := range h.outcomes {
		o[k] = v
	}
	return o
}

// Stale lists the plain reads older than what their client had written
// or read on the same member.
func (h *History) Stale() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.stale...)
}

// Resp is an etcd v2 keys answer (or error).
type Resp struct {
	Action string `json:"action"`
	Node   struct {
		Key           string `json:"key"`
		Value         string `json:"value"`
		Dir           bool   `json:"dir"`
		ModifiedIndex uint64 `json:"modifiedIndex"`
		Nodes         []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"nodes"`
	} `json:"node"`
	ErrorCode int    `json:"errorCode"`
	Message   string `json:"message"`
	Cause     string `json:"cause"`
}

// Client reaches the members' client ports.
type Client struct {
	HTTP *http.Client // nil: a client with a 10 s timeout
	// URL is member i's client URL now (a restarted VM gets new host ports).
	URL     func(i int) string
	Members int
}

var defaultHTTP = &http.Client{Timeout: 10 * time.Second}

// Do sends one keys request to member i; status -1 means no answer.
func (c *Client) Do(ctx context.Context, i int, method, key string, q url.Values) (int, *Resp, error) {
	return Do(ctx, c.HTTP, c.URL(i), method, key, q)
}

// Do sends one keys request to the member at base (its client URL) with
// hc (nil: a client with a 10 s timeout): q is the query of a GET, the
// form of anything else. Status -1 means no answer.
func Do(ctx context.Context, hc *http.Client, base, method, key string, q url.Values) (int, *Resp, error) {
	u := base + "/v2/keys" + key
	var body io.Reader
	if method == http.MethodGet {
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
	} else {
		body = strings.NewReader(q.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return -1, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return -1, nil, err
	}
	defer resp.Body.Close()
	var r Resp
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, &r, nil
}

// NotApplied reports answers that prove a put never reached the log: the
// connection was refused, or the member said there was no leader to take it.
func NotApplied(err error, r *Resp) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return err == nil && r != nil && r.ErrorCode == 301
}

// Missing lists the acknowledged keys that a quorum read of their
// directories through member i does not return (one read per directory).
func (c *Client) Missing(ctx context.Context, i int, acked []string) ([]string, error) {
	dirs := map[string]map[string]bool{}
	for _, k := range acked {
		d := k[:strings.LastIndex(k, "/")]
		if dirs[d] == nil {
			dirs[d] = map[string]bool{}
		}
	}
	for d, have := range dirs {
		st, r, err := c.Do(ctx, i, http.MethodGet, d, url.Values{"quorum": {"true"}, "recursive": {"true"}})
		if err != nil {
			return nil, err
		}
		if st == 404 && r != nil && r.ErrorCode == 100 {
			continue
		}
		if st != 200 || r == nil {
			return nil, fmt.Errorf("quorum read of %s: status %d", d, st)
		}
		for _, n := range r.Node.Nodes {
			have[n.Key] = true
		}
	}
	var lost []string
	for _, k := range acked {
		if !dirs[k[:strings.LastIndex(k, "/")]][k] {
			lost = append(lost, k)
		}
	}
	return lost, nil
}
