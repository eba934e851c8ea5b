package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The peer port carries three protocols. The first byte a dialer writes
// (after TLS, when enabled) says which: raft's RPCs, HTTP for client
// requests a follower forwards to the leader, or the stream of a follower's
// proposal batches (proposalstream.go). One port, one TLS setup, and a
// follower always knows where to forward because raft knows the leader's
// address.
const (
	protoRaft      byte = 'R'
	protoHTTP      byte = 'H'
	protoProposals byte = 'P'
)

// peerMux accepts peer connections and sorts them by their first byte.
type peerMux struct {
	ln  net.Listener
	tls *tls.Config // client side for dialing; nil: plain TCP
	// local is the source address for outgoing peer connections: the peer
	// listener's IP when it is a specific one, so peers see the address
	// this member is known by (and firewalls can tell members apart).
	local *net.TCPAddr
	raftL *chanListener
	httpL *chanListener
	propL *chanListener
	// noProposals makes this port refuse proposal streams, as a member
	// of an earlier release does (tests of the HTTP fallback).
	noProposals atomic.Bool
	closeMu     sync.Once
	closed      chan struct{}
	log         *slog.Logger
}

// maxPeerConns bounds the peer port's open connections (raft's pools, its
// pipelines and forwarded requests stay far below it): a flood waits in
// the kernel's backlog instead of costing a goroutine each.
const maxPeerConns = 4096

func newPeerMux(ln net.Listener, serverTLS, clientTLS *tls.Config, log *slog.Logger) *peerMux {
	ln = LimitListener(ln, maxPeerConns)
	if serverTLS != nil {
		ln = tls.NewListener(ln, serverTLS)
	}
	m := &peerMux{ln: ln, tls: clientTLS, raftL: newChanListener(ln.Addr()), httpL: newChanListener(ln.Addr()), propL: newChanListener(ln.Addr()), closed: make(chan struct{}), log: log}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		m.local = &net.TCPAddr{IP: a.IP}
	}
	go m.serve()
	return m
}

func (m *peerMux) serve() {
	defer func() {
		m.raftL.close()
		m.httpL.close()
		m.propL.close()
	}()
	var delay time.Duration
	for {
		c, err := m.ln.Accept()
		if err == nil {
			delay = 0
			go m.sort(c)
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
		// The listener is still open: this accept failed (EMFILE,
		// ECONNABORTED, ...). Back off and keep serving.
		delay = nextAcceptDelay(delay)
		m.log.Warn("peer port: accept failed; retrying", "err", err, "in", delay)
		select {
		case <-time.After(delay):
		case <-m.closed:
			return
		}
	}
}

func (m *peerMux) sort(c net.Conn) {
	// A peer that connects and says nothing must not hold a goroutine forever.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		m.raftL.push(c)
	case protoHTTP:
		m.httpL.push(c)
	case protoProposals:
		if m.noProposals.Load() {
			c.Close()
			return
		}
		m.propL.push(c)
	default:
		c.Close()
	}
}

func (m *peerMux) Close() error {
	var err error
	m.closeMu.Do(func() {
		close(m.closed)
		err = m.ln.Close()
	})
	return err
}

// dial connects to a peer and announces proto.
func (m *peerMux) dial(ctx context.Context, addr string, proto byte) (net.Conn, error) {
	d := net.Dialer{}
	if m.local != nil {
		d.LocalAddr = m.local
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if m.tls != nil {
		conf := m.tls
		if conf.ServerName == "" && !conf.InsecureSkipVerify {
			// Peers are dialed by address: check the certificate for it.
			host, _, _ := net.SplitHostPort(addr)
			conf = conf.Clone()
			conf.ServerName = host
		}
		tc := tls.Client(c, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(dl)
	}
	if _, err := c.Write([]byte{proto}); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// raftStream is the raft.StreamLayer over the mux.
type raftStream struct {
	m *peerMux
	// advertise is this member's peer address as others dial it. Raft
	// sends Addr() to followers as the leader's address, which Forward
	// dials: the listener's own address is wrong when it is 0.0.0.0 or
	// [::] (followers then "forwarded" to themselves).
	advertise net.Addr
}

func (s raftStream) Accept() (net.Conn, error) { return s.m.raftL.Accept() }
func (s raftStream) Close() error              { return s.m.Close() }
func (s raftStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.m.ln.Addr()
}

// advertisedAddr is a host:port from an advertised peer URL.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
func (s raftStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.m.dial(ctx, string(addr), protoRaft)
}

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	addr net.Addr
	c    chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(a net.Addr) *chanListener {
	return &chanListener{addr: a, c: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.c <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) close() { l.once.Do(func() { close(l.done) }) }
func (l *chanListener) Close() error {
	l.close()
	return nil
}
func (l *chanListener) Addr() net.Addr { return l.addr }
