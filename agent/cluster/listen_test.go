package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first n accepts with err, then accepts.
type failingListener struct {
	net.Listener
	n     atomic.Int32
	err   error
	tries atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.tries.Add(1)
	if l.n.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestPeerMuxSurvivesAcceptErrors: the peer port keeps serving after
// accept fails with errors that say nothing about the listener.
func TestPeerMuxSurvivesAcceptErrors(t *testing.T) {
	cases := []struct {
		name string
		err  error
	}{
		{"out of file descriptors", &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}},
		{"system file table full", &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)}},
		{"connection aborted", &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}},
		{"not temporary", errors.New("some other accept error")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &failingListener{Listener: inner, err: tc.err}
			ln.n.Store(4)
			m := newPeerMux(ln, nil, nil, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
			defer m.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := m.dial(ctx, inner.Addr().String(), protoHTTP)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := m.httpL.Accept()
			if err != nil {
				t.Fatalf("after %d failed accepts the peer port stopped serving: %v", 4, err)
			}
			got.Close()
			if n := ln.tries.Load(); n < 5 {
				t.Fatalf("%d accepts tried, want the 4 failures and a success", n)
			}
		})
	}
}

func TestPeerMuxStopsOnClose(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newPeerMux(inner, nil, nil, slog.Default())
	m.Close()
	if _, err := m.raftL.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("raft listener after Close: %v", err)
	}
}

func TestAcceptDelay(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for i := 0; i < 10; i++ {
		d = nextAcceptDelay(d)
		got = append(got, d)
	}
	if got[0] != minAcceptDelay || got[1] != 2*minAcceptDelay || got[9] != maxAcceptDelay {
		t.Fatalf("delays %v", got)
	}
}

// TestLimitListener: with the limit reached, the next connection is
// accepted only once an open one closes.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(inner, 1)
	defer ln.Close()
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			second <- c
		}
		close(second)
	}()
	select {
	case <-second:
		t.Fatal("a second connection was accepted while the limit of 1 was open")
	case <-time.After(50 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second Close must not release another slot
	c, ok := <-second
	if !ok {
		t.Fatal("no connection accepted after the first closed")
	}
	c.Close()
	ln.Close()
	if _, err := ln.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
}

// TestBodyReadTimeout: a body that stalls is cut off after the timeout; a
// request whose body arrived keeps its connection and context however long
// its handler then takes (a long-poll watch).
func TestBodyReadTimeout(t *testing.T) {
	const d = 100 * time.Millisecond
	readErr := make(chan error, 1)
	srv := httptest.NewServer(BodyReadTimeout(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		time.Sleep(3 * d) // past the body deadline
		if err := r.Context().Err(); err != nil {
			http.Error(w, "request cancelled: "+err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	}), d))
	defer srv.Close()

	// Stalled body: headers promise 10 bytes, 3 come.
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
	if err := <-readErr; err == nil {
		t.Fatal("a stalled body was read to the end")
	}

	resp, err := http.Post(srv.URL+"/k", "text/plain", strings.NewReader("value"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := <-readErr; err != nil || resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("slow handler after a full body: read %v, %d %s", err, resp.StatusCode, b)
	}
}

// TestClientServerSurvivesAcceptErrors: a client port (http.Server on a
// LimitListener, as pithd's are) keeps serving after accepts fail with
// EMFILE: the limit passes the error on as it came, so net/http backs off
// and retries instead of returning from Serve.
func TestClientServerSurvivesAcceptErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: inner, err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}}
	fl.n.Store(3)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(LimitListener(fl, 4)) }()
	defer srv.Close()
	resp, err := http.Get("http://" + inner.Addr().String())
	if err != nil {
		select {
		case err := <-served:
			t.Fatalf("server stopped after EMFILE: %v", err)
		default:
		}
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || fl.tries.Load() < 4 {
		t.Fatalf("answer %q after %d accepts", b, fl.tries.Load())
	}
}
