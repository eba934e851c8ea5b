package discovery

// What a discovery caller may do. A token is the only credential, so every
// key request must name one, and may touch nothing outside it:
//
//	GET/HEAD  <token>                (wait=true too: etcd's client watches it)
//	GET/HEAD  <token>/_config[/size]
//	GET/HEAD  <token>/<member id>
//	PUT       <token>/<member id>?prevExist=false   value=name=peerURL,...
//
// Anything else (the registry root or any prefix above a token, a key
// outside the registry, overwriting, deleting, directories, TTLs, streams)
// is refused with 403 and a one-line reason, before the store sees it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pith-os/pith/agent/kv"

	"golang.org/x/net/netutil"
)

func (d *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == kv.KeysPrefix || strings.HasPrefix(p, kv.KeysPrefix+"/"):
		d.serveKeys(w, r)
	case p == "/new":
		d.handleNew(w, r)
	case p == "/health":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"health":"true"}`)
	default:
		http.NotFound(w, r)
	}
}

// refusal is a request the discovery service will not serve.
type refusal struct {
	status int
	reason string
}

func (e *refusal) Error() string { return e.reason }

func refuse(status int, format string, args ...any) *refusal {
	return &refusal{status: status, reason: "discovery: " + fmt.Sprintf(format, args...)}
}

// writeTo answers in etcd's error shape, so etcd's own client shows the
// reason.
func (e *refusal) writeTo(w http.ResponseWriter, index uint64) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Etcd-Index", strconv.FormatUint(index, 10))
	w.WriteHeader(e.status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // the reasons quote <token>/<id>
	_ = enc.Encode(kv.Error{ErrorCode: kv.EcodeUnauthorized, Message: e.reason, Index: index})
}

// splitKey checks that urlPath names a key inside one token and
// returns the token and the rest ("", "_config", "_config/size" or a
// member id). It works on the path exactly as sent: no cleaning, no empty,
// "." or ".." segments, so no spelling reaches another token.
func splitKey(urlPath string) (token, rest string, err error) {
	base := kv.KeysPrefix + RegistryPrefix + "/"
	if !strings.HasPrefix(urlPath, base) {
		return "", "", refuse(http.StatusForbidden, "only keys inside a token are served (%s<token>/...); the registry and everything above it are not listed", base)
	}
	parts := strings.Split(urlPath[len(base):], "/")
	if !isToken(parts[0]) {
		return "", "", refuse(http.StatusForbidden, "%q is not a discovery token (32 hex digits from /new)", parts[0])
	}
	switch {
	case len(parts) == 1:
	case len(parts) == 2 && (parts[1] == "_config" || isMemberID(parts[1])):
	case len(parts) == 3 && parts[1] == "_config" && parts[2] == "size":
	default:
		return "", "", refuse(http.StatusForbidden, "a token holds only _config/size and member registrations (<token>/<id>, id of letters, digits, '-', '_', '.'), not %q", urlPath[len(base)+len(parts[0]):])
	}
	return parts[0], strings.Join(parts[1:], "/"), nil
}

func isToken(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// isMemberID accepts etcd's hex member ids and other plain names; a
// leading '_' is reserved (hidden keys such as _config).
func isMemberID(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '_' || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (d *Service) serveKeys(w http.ResponseWriter, r *http.Request) {
	token, rest, err := splitKey(r.URL.Path)
	if err == nil {
		err = d.readBody(w, r)
	}
	if err == nil {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			err = d.checkRead(r, token)
		case http.MethodPut:
			if rest == "" || strings.HasPrefix(rest, "_config") {
				err = refuse(http.StatusForbidden, "only <token>/<member id> can be written; the token and its _config are the service's")
			} else {
				d.register(w, r, token)
				return
			}
		default:
			err = refuse(http.StatusForbidden, "%s is not allowed: registrations are create-only (PUT <token>/<id>?prevExist=false) and are never changed or deleted", r.Method)
		}
	}
	var ref *refusal
	if errors.As(err, &ref) {
		ref.writeTo(w, d.store.Index())
		return
	}
	d.server.ServeHTTP(w, r)
}

// readBody reads the (small) body within HeaderTimeout, so a slow sender
// cannot hold a connection, then lifts the deadline for a long-poll watch.
func (d *Service) readBody(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(d.opt.HeaderTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limits.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return refuse(http.StatusRequestEntityTooLarge, "request body over the limit of %d bytes", limits.MaxBodyBytes)
		}
		return refuse(http.StatusBadRequest, "reading the request body: %v", err)
	}
	_ = rc.SetReadDeadline(time.Time{})
	r.Body = io.NopCloser(bytes.NewReader(body))
	return nil
}

// checkRead refuses streams (etcd's discovery never streams) and answers
// for tokens that do not exist, so nobody parks watchers on guessed names.
func (d *Service) checkRead(r *http.Request, token string) error {
	if err := r.ParseForm(); err != nil {
		return refuse(http.StatusBadRequest, "%v", err)
	}
	if s, _ := strconv.ParseBool(r.Form.Get("stream")); s {
		return refuse(http.StatusForbidden, "stream=true is not served: watch with wait=true")
	}
	if _, err := d.store.Get(RegistryPrefix+"/"+token, false, false); err != nil {
		return refuse(http.StatusNotFound, "token not found (expired, or never created)")
	}
	return nil
}

// register creates <token>/<id>: only as a create (prevExist=false), only
// under a live token, and only while the token has room.
func (d *Service) register(w http.ResponseWriter, r *http.Request, token string) {
	if err := r.ParseForm(); err != nil {
		refuse(http.StatusBadRequest, "%v", err).writeTo(w, d.store.Index())
		return
	}
	rr, perr := kv.ParseKeyRequest(r.Method, r.URL.Path, r.Form, limits)
	if perr != nil {
		d.server.WriteError(w, perr)
		return
	}
	if rr.PrevExist == nil || *rr.PrevExist || rr.Dir || rr.TTL != nil || rr.Refresh != nil || rr.PrevValue != "" || rr.PrevIndex != 0 {
		refuse(http.StatusForbidden, "registrations are create-only: PUT <token>/<id>?prevExist=false with a value and nothing else (no dir, ttl, refresh, prevValue, prevIndex)").writeTo(w, d.store.Index())
		return
	}
	if rr.Value == "" {
		refuse(http.StatusBadRequest, "a registration needs a value (name=peerURL,...)").writeTo(w, d.store.Index())
		return
	}
	dir := RegistryPrefix + "/" + token
	d.mu.Lock()
	var ev *kv.Event
	var idx uint64
	var err error
	switch {
	case !d.tokenExists(dir):
		err = refuse(http.StatusNotFound, "token not found (expired, or never created)")
	case d.keyExists(rr.Path):
		// etcd's answer for a create of a registration someone made
		// first (412), without a log entry: it stays as it was.
		err = kv.NewError(kv.EcodeNodeExist, rr.Path, d.store.Index())
	case d.countChildren(dir) >= d.opt.MaxRegistrations:
		err = refuse(http.StatusForbidden, "token already holds %d registrations, the limit", d.opt.MaxRegistrations)
	default:
		ev, idx, err = d.propose(kv.Command{Op: kv.OpCreate, Path: rr.Path, Value: rr.Value})
	}
	d.mu.Unlock()
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		ref.writeTo(w, d.store.Index())
	case err != nil:
		d.server.WriteError(w, err)
	default:
		_, term := d.local.RaftStatus()
		d.server.WriteEvent(w, ev, idx, term, rr.NoValueOnSuccess)
	}
}

func (d *Service) keyExists(p string) bool {
	_, err := d.store.Get(p, false, false)
	return err == nil
}

func (d *Service) tokenExists(dir string) bool {
	ev, err := d.store.Get(dir, false, false)
	return err == nil && ev.Node != nil && ev.Node.Dir
}

// Serve answers on ln until ctx ends, with the service's limits on
// connections: at most MaxConns open, headers and body within
// HeaderTimeout, idle keep-alives closed after a minute.
func (d *Service) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           d,
		ReadHeaderTimeout: d.opt.HeaderTimeout,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
	}
	go func() { <-ctx.Done(); srv.Close() }()
	err := srv.Serve(netutil.LimitListener(ln, d.opt.MaxConns))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
