package cluster

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// Accept errors such as EMFILE (no file descriptor left) or ECONNABORTED
// say nothing about the listener: the next accept may work. A loop that
// returns on them stops serving for good; one that retries at once spins
// while the descriptor table is full. net/http's Server backs off from
// 5 ms to 1 s; the peer port's own accept loop does the same.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

// nextAcceptDelay doubles the pause after each failed accept, within bounds.
func nextAcceptDelay(d time.Duration) time.Duration {
	if d == 0 {
		return minAcceptDelay
	}
	return min(2*d, maxAcceptDelay)
}

// LimitListener lets at most n connections be open at once: Accept waits
// while n are, so each connection's goroutines stay bounded in number
// (golang.org/x/net/netutil's, which also ends a waiting Accept on Close).
func LimitListener(ln net.Listener, n int) net.Listener { return netutil.LimitListener(ln, n) }

// BodyReadTimeout gives a request d to send its body, without a
// server-wide ReadTimeout: that one would also end long-polling watches
// (net/http cancels a request whose connection read times out). The
// deadline is lifted once the handler has read the body or closed it.
func BodyReadTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
			h.ServeHTTP(w, r) // a writer without deadlines (tests)
			return
		}
		b := &deadlineBody{ReadCloser: r.Body, rc: rc}
		defer b.lift()
		r.Body = b
		h.ServeHTTP(w, r)
	})
}

type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	once sync.Once
}

func (b *deadlineBody) lift() { b.once.Do(func() { _ = b.rc.SetReadDeadline(time.Time{}) }) }

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.lift()
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	b.lift()
	return b.ReadCloser.Close()
}
