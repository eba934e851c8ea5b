package kv

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// KeysPrefix is where the keys API lives.
const KeysPrefix = "/v2/keys"

// Limits bound what one request may ask of a node.
type Limits struct {
	// MaxBodyBytes bounds a request body (default 2 MiB).
	MaxBodyBytes int64
	// MaxValueBytes bounds a value (default 1 MiB, etcd's order of size).
	MaxValueBytes int
	// MaxKeyBytes bounds a key path (default 4 KiB).
	MaxKeyBytes int
	// WatchTimeout ends a long-poll watch (default 5 min, as etcd).
	WatchTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = 2 << 20
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = 1 << 20
	}
	if l.MaxKeyBytes <= 0 {
		l.MaxKeyBytes = 4096
	}
	if l.WatchTimeout <= 0 {
		l.WatchTimeout = 5 * time.Minute
	}
	return l
}

// Request is a parsed keys request, with etcd's field semantics: nil
// pointers are "not given".
type Request struct {
	Method           string
	Path             string
	Value            string
	Dir              bool
	PrevValue        string
	PrevIndex        uint64
	PrevExist        *bool
	Wait             bool
	WaitIndex        uint64
	Recursive        bool
	Sorted           bool
	Quorum           bool
	Stream           bool
	NoValueOnSuccess bool
	TTL              *uint64
	Refresh          *bool
}

func reqErr(code int, cause string) *Error { return NewError(code, cause, 0) }

func getUint64(form url.Values, key string) (uint64, bool, error) {
	vals, ok := form[key]
	if !ok || len(vals) == 0 {
		return 0, false, nil
	}
	i, err := strconv.ParseUint(vals[0], 10, 64)
	return i, true, err
}

func getBool(form url.Values, key string) (bool, error) {
	vals, ok := form[key]
	if !ok || len(vals) == 0 {
		return false, nil
	}
	return strconv.ParseBool(vals[0])
}

// ParseKeyRequest turns a method, the URL path and the merged query and form
// values into a Request, answering etcd's errors (code and cause) for bad
// input. It is the fuzzed entry point of the API.
func ParseKeyRequest(method, urlPath string, form url.Values, lim Limits) (*Request, *Error) {
	lim = lim.withDefaults()
	if !strings.HasPrefix(urlPath, KeysPrefix) {
		return nil, reqErr(EcodeInvalidForm, "incorrect key prefix")
	}
	raw := urlPath[len(KeysPrefix):]
	if raw != "" && raw[0] != '/' {
		return nil, reqErr(EcodeInvalidForm, "incorrect key prefix")
	}
	if err := checkKey(raw, lim); err != nil {
		return nil, err
	}
	rr := &Request{Method: method, Path: cleanPath(raw)}
	var err error
	if rr.PrevIndex, _, err = getUint64(form, "prevIndex"); err != nil {
		return nil, reqErr(EcodeIndexNaN, `invalid value for "prevIndex"`)
	}
	if rr.WaitIndex, _, err = getUint64(form, "waitIndex"); err != nil {
		return nil, reqErr(EcodeIndexNaN, `invalid value for "waitIndex"`)
	}
	bools := []struct {
		name string
		dst  *bool
	}{{"recursive", &rr.Recursive}, {"sorted", &rr.Sorted}, {"wait", &rr.Wait}, {"dir", &rr.Dir}, {"quorum", &rr.Quorum}, {"stream", &rr.Stream}}
	for _, b := range bools {
		if *b.dst, err = getBool(form, b.name); err != nil {
			return nil, reqErr(EcodeInvalidField, fmt.Sprintf("invalid value for %q", b.name))
		}
	}
	if rr.Wait && method != "GET" {
		return nil, reqErr(EcodeInvalidField, `"wait" can only be used with GET requests`)
	}
	rr.PrevValue = form.Get("prevValue")
	if _, ok := form["prevValue"]; ok && rr.PrevValue == "" {
		return nil, reqErr(EcodePrevValueRequired, `"prevValue" cannot be empty`)
	}
	if rr.NoValueOnSuccess, err = getBool(form, "noValueOnSuccess"); err != nil {
		return nil, reqErr(EcodeInvalidField, `invalid value for "noValueOnSuccess"`)
	}
	if len(form.Get("ttl")) > 0 {
		ttl, _, err := getUint64(form, "ttl")
		// A TTL beyond ~290 years cannot be an expiry time in nanoseconds.
		if err != nil || ttl > uint64(1<<63-1)/uint64(time.Second) {
			return nil, reqErr(EcodeTTLNaN, `invalid value for "ttl"`)
		}
		rr.TTL = &ttl
	}
	if _, ok := form["prevExist"]; ok {
		b, err := getBool(form, "prevExist")
		if err != nil {
			return nil, reqErr(EcodeInvalidField, "invalid value for prevExist")
		}
		rr.PrevExist = &b
	}
	if _, ok := form["refresh"]; ok {
		b, err := getBool(form, "refresh")
		if err != nil {
			return nil, reqErr(EcodeInvalidField, "invalid value for refresh")
		}
		rr.Refresh = &b
		if b {
			if v, ok := form["value"]; ok && len(v) > 0 && v[0] != "" {
				return nil, reqErr(EcodeRefreshValue, "A value was provided on a refresh")
			}
			if rr.TTL == nil {
				return nil, reqErr(EcodeRefreshTTLRequired, "No TTL value set")
			}
		}
	}
	rr.Value = form.Get("value")
	if len(rr.Value) > lim.MaxValueBytes {
		return nil, reqErr(EcodeInvalidField, fmt.Sprintf("value is %d bytes, over the limit of %d", len(rr.Value), lim.MaxValueBytes))
	}
	return rr, nil
}

// checkKey refuses keys a store path should never carry: over the size
// limit, with NUL or control bytes, or with "." / ".." segments (which
// would silently address another key after cleaning).
func checkKey(raw string, lim Limits) *Error {
	if len(raw) > lim.MaxKeyBytes {
		return reqErr(EcodeInvalidField, fmt.Sprintf("key is %d bytes, over the limit of %d", len(raw), lim.MaxKeyBytes))
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] < 0x20 || raw[i] == 0x7f {
			return reqErr(EcodeInvalidField, fmt.Sprintf("key %q contains a control character", raw))
		}
	}
	for _, seg := range strings.Split(raw, "/") {
		if seg == "." || seg == ".." {
			return reqErr(EcodeInvalidField, fmt.Sprintf("key %q contains a %q segment", raw, seg))
		}
	}
	return nil
}

// Command builds the store command for a write request, following etcd's
// choice of operation from prevExist/prevValue/prevIndex. now fixes TTLs
// as absolute expiry times.
func (rr *Request) Command(now time.Time) *Command {
	c := &Command{Path: rr.Path, Value: rr.Value, Dir: rr.Dir, PrevValue: rr.PrevValue, PrevIndex: rr.PrevIndex, Recursive: rr.Recursive, Sorted: rr.Sorted}
	if rr.TTL != nil {
		// Past year 2262 Unix nanoseconds overflow: such a TTL means
		// "practically never", not a negative (already passed) expiry.
		c.Expire = math.MaxInt64
		if n := now.UnixNano(); *rr.TTL < uint64(math.MaxInt64-n)/uint64(time.Second) {
			c.Expire = n + int64(*rr.TTL)*int64(time.Second)
		}
	}
	c.Refresh = rr.Refresh != nil && *rr.Refresh
	switch rr.Method {
	case "POST":
		c.Op = OpCreateUnique
	case "PUT":
		switch {
		case rr.PrevExist != nil && *rr.PrevExist:
			if rr.PrevIndex == 0 && rr.PrevValue == "" {
				c.Op = OpUpdate
			} else {
				c.Op = OpCompareAndSwap
			}
		case rr.PrevExist != nil:
			c.Op = OpCreate
		case rr.PrevIndex > 0 || rr.PrevValue != "":
			c.Op = OpCompareAndSwap
		default:
			c.Op = OpSet
		}
	case "DELETE":
		if rr.PrevIndex > 0 || rr.PrevValue != "" {
			c.Op = OpCompareAndDelete
		} else {
			c.Op = OpDelete
		}
	default:
		c.Op = OpGet
	}
	return c
}
