package vm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/atomicfile"

	"golang.org/x/crypto/ssh"
)

// DefaultUser is the login the image authorizes the fw_cfg key for.
const DefaultUser = "core"

// KeyFile is the private key's name in a state directory (public: + ".pub").
const KeyFile = "id_ed25519"

// EnsureKey loads dir/id_ed25519, creating an ed25519 pair on first use.
// It returns the signer and the public key as an authorized_keys line.
func EnsureKey(dir string) (ssh.Signer, string, error) {
	path := filepath.Join(dir, KeyFile)
	if b, err := os.ReadFile(path); err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, "", fmt.Errorf("ssh key %s: %v (delete it to make a new one)", path, err)
		}
		return s, authorizedLine(s.PublicKey()), nil
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "pith boot")
	if err != nil {
		return nil, "", err
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", err
	}
	line := authorizedLine(s.PublicKey())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, "", err
	}
	if err := atomicfile.WriteFile(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		return nil, "", err
	}
	return s, line, nil
}

func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " pith-boot"
}

// SSHResult is one command's outcome.
type SSHResult struct {
	Stdout, Stderr []byte
	ExitStatus     int
}

// RunSSH runs cmd on 127.0.0.1:port as user. A non-zero exit is not an error
// (see ExitStatus); transport failures are.
func RunSSH(ctx context.Context, port int, user string, key ssh.Signer, cmd string) (SSHResult, error) {
	return RunSSHInput(ctx, port, user, key, cmd, nil)
}

// RunSSHInput is RunSSH with stdin fed from in (e.g. an image to write).
func RunSSHInput(ctx context.Context, port int, user string, key ssh.Signer, cmd string, in io.Reader) (SSHResult, error) {
	client, err := DialSSH(ctx, port, user, key)
	if err != nil {
		return SSHResult{}, err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return SSHResult{}, err
	}
	return runSession(ctx, client, sess, cmd, in)
}

// runSession runs cmd in sess, a session of client, with stdin from in
// (nil: none). When ctx ends first, client is closed, which ends the
// command. A non-zero exit is not an error (SSHResult.ExitStatus).
func runSession(ctx context.Context, client *ssh.Client, sess *ssh.Session, cmd string, in io.Reader) (SSHResult, error) {
	defer sess.Close()
	var out, errb bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errb
	if in != nil {
		sess.Stdin = in
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	var err error
	select {
	case <-ctx.Done():
		client.Close()
		return SSHResult{Stdout: out.Bytes(), Stderr: errb.Bytes()}, ctx.Err()
	case err = <-done:
	}
	res := SSHResult{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.ExitStatus = ee.ExitStatus()
	default:
		return res, err
	}
	return res, nil
}

// DialSSH opens an SSH client to a forwarded guest port. Host keys are not
// checked: the guest is a throwaway VM reached only over 127.0.0.1 and makes
// new host keys on every first boot.
func DialSSH(ctx context.Context, port int, user string, key ssh.Signer) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         30 * time.Second,
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}
