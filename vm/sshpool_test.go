package vm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
)

// execServer is an SSH server on 127.0.0.1 that answers each exec request
// with the command as stdout and exit status 3 when it is "fail". It
// counts the connections it accepted and can drop them all, as a guest
// reboot does.
type execServer struct {
	ln    net.Listener
	cfg   *ssh.ServerConfig
	conns atomic.Int32
	mu    sync.Mutex
	open  []net.Conn
}

func newExecServer(t *testing.T, client ssh.PublicKey) *execServer {
	t.Helper()
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) != string(client.Marshal()) {
			return nil, ssh.ErrNoAuth
		}
		return nil, nil
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &execServer{ln: ln, cfg: cfg}
	t.Cleanup(func() { ln.Close(); s.dropAll() })
	go s.serve()
	return s
}

func (s *execServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *execServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.open {
		c.Close()
	}
	s.open = nil
}

func (s *execServer) serve() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		s.mu.Lock()
		s.open = append(s.open, nc)
		s.mu.Unlock()
		go func() {
			_, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
			if err != nil {
				return
			}
			go ssh.DiscardRequests(reqs)
			for nch := range chans {
				ch, creqs, err := nch.Accept()
				if err != nil {
					continue
				}
				go func() {
					defer ch.Close()
					for r := range creqs {
						if r.Type != "exec" {
							r.Reply(false, nil)
							continue
						}
						cmd := string(r.Payload[4:])
						r.Reply(true, nil)
						ch.Write([]byte(cmd))
						status := make([]byte, 4)
						if cmd == "fail" {
							binary.BigEndian.PutUint32(status, 3)
						}
						ch.SendRequest("exit-status", false, status)
						return
					}
				}()
			}
		}()
	}
}

// TestSSHPool: commands share one connection; a non-zero exit keeps it; a
// connection the server dropped (a guest reboot) is dialled again once,
// without failing the command; Forget makes the next command dial.
func TestSSHPool(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	srv := newExecServer(t, key.PublicKey())
	var p SSHPool
	defer p.Close()
	ctx := context.Background()
	run := func(cmd string, wantExit int) {
		t.Helper()
		r, err := p.Run(ctx, srv.port(), "core", key, cmd)
		if err != nil || string(r.Stdout) != cmd || r.ExitStatus != wantExit {
			t.Fatalf("%q: %+v, %v; want stdout %q, exit %d", cmd, r, err, cmd, wantExit)
		}
	}
	steps := []struct {
		name      string
		before    func()
		cmd       string
		exit      int
		wantConns int32
	}{
		{"first command dials", nil, "one", 0, 1},
		{"second reuses", nil, "two", 0, 1},
		{"a failing command keeps the connection", nil, "fail", 3, 1},
		{"dropped by the guest: dialled again", srv.dropAll, "three", 0, 2},
		{"then reused", nil, "four", 0, 2},
		{"forgotten: dialled again", func() { p.Forget(srv.port()) }, "five", 0, 3},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		run(s.cmd, s.exit)
		if got := srv.conns.Load(); got != s.wantConns {
			t.Fatalf("%s: %d connections accepted, want %d", s.name, got, s.wantConns)
		}
	}

	// Concurrent commands share the connection too.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := strings.Repeat("x", i+1)
			if r, err := p.Run(ctx, srv.port(), "core", key, cmd); err != nil || string(r.Stdout) != cmd {
				t.Errorf("concurrent %q: %+v, %v", cmd, r, err)
			}
		}()
	}
	wg.Wait()
	if got := srv.conns.Load(); got != 3 {
		t.Fatalf("concurrent commands: %d connections accepted, want 3", got)
	}

	// Another key is another login: never a connection made with the first.
	_, priv2, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewSignerFromKey(priv2)
	if _, err := p.Run(ctx, srv.port(), "core", other, "x"); err == nil {
		t.Fatal("a key the server refuses ran a command over the pool")
	}
}
