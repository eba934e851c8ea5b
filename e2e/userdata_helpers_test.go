package e2e

// Helpers of the first-boot and cluster VM tests: the offline container
// image they run, SSH as users other than core, and polling a node.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pith-os/pith/vm"
)

// helloImageName is the tag the tests import the offline image as.
const helloImageName = "pith-e2e/hello:1"

var (
	helloOnce sync.Once
	helloTar  []byte
	helloErr  error
)

// helloImageTarGz builds testdata/hello (a static HTTP server, CGO off) and
// packs it as the root filesystem of a container image, a tarball that
// `docker import` takes: /hello and nothing else. No registry is involved.
func helloImageTarGz(t *testing.T) []byte {
	t.Helper()
	helloOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(file), "testdata", "hello", "main.go")
		dir, err := os.MkdirTemp("", "pith-e2e-hello-")
		if err != nil {
			helloErr = err
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "hello")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			helloErr = &buildError{err: err, out: string(out)}
			return
		}
		b, err := os.ReadFile(bin)
		if err != nil {
			helloErr = err
			return
		}
		var buf bytes.Buffer
		gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		tw := tar.NewWriter(gz)
		hdr := &tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			helloErr = err
			return
		}
		tw.Write(b)
		tw.Close()
		gz.Close()
		helloTar = buf.Bytes()
	})
	if helloErr != nil {
		t.Fatalf("build the hello container image: %v", helloErr)
	}
	return helloTar
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// helloImagePath is where the tests copy the image tarball on a node.
const helloImagePath = "/var/lib/pith-e2e/hello.tar.gz"

// loadHelloImage copies the image tarball to the node over SSH (as core,
// with sudo), atomically, so a unit waiting for the file never sees half
// of it. Shipping it in user-data instead is slow: QEMU's fw_cfg sysfs file
// is read in pages, each read re-skipping from the start.
func (n *Node) loadHelloImage(t *testing.T) {
	t.Helper()
	ctx, cancel := n.ctx()
	defer cancel()
	client, err := vm.DialSSH(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key)
	if err != nil {
		t.Fatalf("%s: ssh: %v", n.Name, err)
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatalf("%s: ssh session: %v", n.Name, err)
	}
	defer sess.Close()
	sess.Stdin = bytes.NewReader(helloImageTarGz(t))
	var out bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &out
	dir := filepath.Dir(helloImagePath)
	if err := sess.Run("sudo sh -c 'mkdir -p " + dir + " && cat > " + helloImagePath + ".tmp && chmod 0600 " + helloImagePath + ".tmp && mv " + helloImagePath + ".tmp " + helloImagePath + "'"); err != nil {
		t.Fatalf("%s: copy the image: %v: %s", n.Name, err, out.String())
	}
}

// newUserKey makes an SSH key pair for a user the test creates.
func newUserKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) + " e2e-user"
}

// writeUserData stores user-data in the test's temp dir.
func writeUserData(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ExecAs runs cmd over SSH as user with key (not the harness's core key).
func (n *Node) ExecAs(user string, key ssh.Signer, cmd string) (vm.SSHResult, error) {
	ctx, cancel := n.ctx()
	defer cancel()
	return vm.RunSSH(ctx, n.M.Ports[22], user, key, cmd)
}

// RunAs is ExecAs for a command that must succeed; it returns trimmed stdout.
func (n *Node) RunAs(user string, key ssh.Signer, cmd string) string {
	n.t.Helper()
	r, err := n.ExecAs(user, key, cmd)
	if err != nil {
		n.t.Fatalf("%s: ssh %s@ %q: %v", n.Name, user, cmd, err)
	}
	if r.ExitStatus != 0 {
		n.t.Fatalf("%s: as %s: %q exited %d\nstdout: %s\nstderr: %s", n.Name, user, cmd, r.ExitStatus, r.Stdout, r.Stderr)
	}
	return strings.TrimSpace(string(r.Stdout))
}

// Poll runs check every interval until it reports done, failing the test
// with check's last description when the boot safety timeout passes or
// QEMU exits. It returns how long it took.
func (n *Node) Poll(what string, interval time.Duration, check func() (bool, string)) time.Duration {
	n.t.Helper()
	start := time.Now()
	deadline := start.Add(BootTimeout(n.c.Accel))
	last := ""
	for time.Now().Before(deadline) {
		ok, desc := check()
		if ok {
			return time.Since(start)
		}
		last = desc
		select {
		case <-n.M.Done():
			n.t.Fatalf("%s: QEMU exited while waiting for %s (last: %s): %v", n.Name, what, last, n.M.Err())
		case <-time.After(interval):
		}
	}
	n.t.Fatalf("%s: %s never happened; last: %s", n.Name, what, last)
	return 0
}

// try runs a command as core, returning stdout and whether it succeeded;
// transport errors count as failure (the node may be busy or going down).
func (n *Node) try(cmd string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := n.c.ssh.Run(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key, cmd)
	if err != nil {
		return err.Error(), false
	}
	out := strings.TrimSpace(string(r.Stdout))
	if r.ExitStatus != 0 {
		return strings.TrimSpace(out + " " + string(r.Stderr)), false
	}
	return out, true
}

// httpGetScript fetches http://127.0.0.1:PORT/ on the node with bash's
// /dev/tcp (no curl needed in the image) and prints the body.
func httpGetScript(port string) string {
	return `bash -c 'exec 3<>/dev/tcp/127.0.0.1/` + port + ` && printf "GET / HTTP/1.0\r\n\r\n" >&3 && sed "1,/^\r*$/d" <&3'`
}
