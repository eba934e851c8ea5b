package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHPool runs commands over one kept SSH connection per guest port, user
// and key. Under TCG a login costs the guest over a second of CPU (key
// exchange, PAM, a logind session: 1.46 s a command against 0.20 s on a
// kept connection, measured in a Pith guest), and the VM tests and the
// walkthrough run hundreds of commands, polls included. Logins themselves
// are checked with RunSSH, which always makes a new connection.
//
// A kept connection the guest has dropped (a reboot, a new QEMU on the
// same port) is found when a session cannot be opened on it, and dialled
// again once. Nothing is retried after a command started.
type SSHPool struct {
	mu      sync.Mutex
	clients map[sshPoolKey]*ssh.Client
}

type sshPoolKey struct {
	port int
	user string
	key  string // the key's public half, marshalled
}

// sessionOpenTimeout bounds opening a session on a kept connection: a
// guest that went down without closing it (rebooting under QEMU's user
// networking) answers nothing, and the connection must be dropped and
// dialled again rather than waited on.
const sessionOpenTimeout = 20 * time.Second

// Run is RunSSH over a kept connection.
func (p *SSHPool) Run(ctx context.Context, port int, user string, key ssh.Signer, cmd string) (SSHResult, error) {
	return p.RunInput(ctx, port, user, key, cmd, nil)
}

// RunInput is RunSSHInput over a kept connection.
func (p *SSHPool) RunInput(ctx context.Context, port int, user string, key ssh.Signer, cmd string, in io.Reader) (SSHResult, error) {
	k := sshPoolKey{port, user, string(key.PublicKey().Marshal())}
	for attempt := 0; ; attempt++ {
		c, fresh, err := p.client(ctx, k, port, user, key)
		if err != nil {
			return SSHResult{}, err
		}
		sess, err := openSession(ctx, c)
		if err != nil {
			p.drop(k, c)
			if fresh || attempt > 0 || ctx.Err() != nil {
				return SSHResult{}, err
			}
			continue // the guest dropped the kept connection: dial again
		}
		res, err := runSession(ctx, c, sess, cmd, in)
		var ee *ssh.ExitError
		if err != nil && !errors.As(err, &ee) {
			p.drop(k, c) // a transport failure: the connection is suspect
		}
		return res, err
	}
}

// Forget closes the kept connections to port, e.g. after the guest on it
// rebooted.
func (p *SSHPool) Forget(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.clients {
		if k.port == port {
			c.Close()
			delete(p.clients, k)
		}
	}
}

// Close closes every kept connection.
func (p *SSHPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.clients {
		c.Close()
		delete(p.clients, k)
	}
}

// client returns the kept connection for k, dialling one if there is none
// (fresh is then true).
func (p *SSHPool) client(ctx context.Context, k sshPoolKey, port int, user string, key ssh.Signer) (c *ssh.Client, fresh bool, err error) {
	p.mu.Lock()
	c = p.clients[k]
	p.mu.Unlock()
	if c != nil {
		return c, false, nil
	}
	c, err = DialSSH(ctx, port, user, key)
	if err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.clients[k]; old != nil {
		// Another command dialled meanwhile: keep one connection.
		c.Close()
		return old, false, nil
	}
	if p.clients == nil {
		p.clients = map[sshPoolKey]*ssh.Client{}
	}
	p.clients[k] = c
	return c, true, nil
}

// drop closes c and forgets it if it is still k's connection.
func (p *SSHPool) drop(k sshPoolKey, c *ssh.Client) {
	c.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clients[k] == c {
		delete(p.clients, k)
	}
}

// openSession opens a session on c within ctx and sessionOpenTimeout;
// when either ends first, c is closed (which ends the wait).
func openSession(ctx context.Context, c *ssh.Client) (*ssh.Session, error) {
	type opened struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := c.NewSession()
		ch <- opened{s, err}
	}()
	t := time.NewTimer(sessionOpenTimeout)
	defer t.Stop()
	select {
	case o := <-ch:
		return o.s, o.err
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	case <-t.C:
		c.Close()
		return nil, fmt.Errorf("ssh: no session on the kept connection after %s", sessionOpenTimeout)
	}
}
