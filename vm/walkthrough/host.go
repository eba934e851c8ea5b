package walkthrough

// The workstation's side of the walkthrough: the discovery service and the
// channel server run as `pith discovery serve` and `pith channel serve`
// processes (what a user would start), the next release is built with
// `pith build` and published with `pith release`.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pith-os/pith/image/manifest"
)

// server is a host process the walkthrough started; it dies with us.
type server struct {
	name string
	cmd  *exec.Cmd
	log  string
	addr string // 127.0.0.1:PORT
	args []string
}

// freeAddr picks a free 127.0.0.1 port.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startServer runs `pith ARGS... --listen ADDR` and waits until probe
// (a path) answers over HTTP on that address.
func (d *Demo) startServer(ctx context.Context, name, probe string, args ...string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &server{name: name, addr: addr, log: filepath.Join(d.cfg.StateDir, name+".log")}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s.args = append(args, "--listen", addr)
	s.cmd = exec.Command(d.pith(), s.args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Killed with the walkthrough's process, whatever way it ends.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d.servers = append(d.servers, s)
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	cl := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := cl.Get("http://" + addr + probe)
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(s.log)
			return nil, fmt.Errorf("%s exited: %v: %s", name, err, strings.TrimSpace(string(b)))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopServers ends the host processes.
func (d *Demo) stopServers() {
	for _, s := range d.servers {
		if s.cmd.Process != nil {
			s.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, s := range d.servers {
		done := make(chan struct{})
		go func() { s.cmd.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
		}
	}
	d.servers = nil
}

func (d *Demo) pith() string { return filepath.Join(d.cfg.BinDir, "pith") }

// runPith runs the pith CLI and returns its combined output.
func (d *Demo) runPith(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.pith(), args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=") // the build config's epoch applies
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("pith %s: %v\n%s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// nextVersion is MAJOR.MINOR.(PATCH+1).
func nextVersion(v string) (string, error) {
	p := strings.Split(v, ".")
	if len(p) != 3 {
		return "", fmt.Errorf("image version %q is not MAJOR.MINOR.PATCH", v)
	}
	n, err := strconv.Atoi(p[2])
	if err != nil || n < 0 {
		return "", fmt.Errorf("image version %q: patch %q is not a number", v, p[2])
	}
	return fmt.Sprintf("%s.%s.%d", p[0], p[1], n+1), nil
}

// buildConfig is the build config that reproduces the image m describes
// with another version: the same Debian inputs, the same epoch.
func buildConfig(m *manifest.Manifest, version string) string {
	in := m.Inputs
	return fmt.Sprintf("version: %q\nplatform: %s\ndebian:\n  suite: %s\n  mirror: %s\n  packages: [%s]\n  kernel: %s\ndisk:\n  size: %d\nformats: [raw]\nsource_date_epoch: %d\n",
		version, m.Platform, in.Suite, in.Mirror, strings.Join(in.Packages, ", "), in.KernelPackage, in.DiskSize, in.SourceDateEpoch)
}

// buildNext builds the next release's image into StateDir/next from the
// same cache, unless a build from the same base image is already there
// (a second demo run reuses it). Its public release key is the one the
// base image trusts, so the nodes accept what it signs.
func (d *Demo) buildNext(ctx context.Context) (string, error) {
	dir := filepath.Join(d.cfg.StateDir, "next")
	baseMf, err := os.ReadFile(filepath.Join(d.cfg.ImageDir, manifest.FileName))
	if err != nil {
		return "", err
	}
	stamp := filepath.Join(dir, "built-from.json")
	if b, err := os.ReadFile(stamp); err == nil && bytes.Equal(b, baseMf) {
		if m, err := manifest.Read(filepath.Join(dir, manifest.FileName)); err == nil && m.Version == d.Next {
			return "cached", nil
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cfgPath := filepath.Join(dir, "pith.yaml")
	if err := os.WriteFile(cfgPath, []byte(buildConfig(d.base, d.Next)), 0o644); err != nil {
		return "", err
	}
	args := []string{"build", "--config", cfgPath, "--out", dir, "--agent-bin-dir", d.cfg.BinDir,
		"--release-key", strings.TrimSuffix(d.cfg.ReleaseKey, ".key") + ".pub"}
	if d.secureBoot != nil {
		args = append(args, "--secure-boot-keys", d.cfg.SecureBootKeys)
	}
	if d.cfg.CacheDir != "" {
		args = append(args, "--cache", d.cfg.CacheDir)
	}
	if _, err := d.runPith(ctx, args...); err != nil {
		return "", err
	}
	return "built", os.WriteFile(stamp, baseMf, 0o644)
}

// httpGet fetches a URL of the cluster's API (forwarded to 127.0.0.1)
// with the workstation's admin certificate, with a short timeout.
func (d *Demo) httpGet(ctx context.Context, url string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return b, resp.StatusCode, err
}

// httpPost posts an empty body, as httpGet.
func (d *Demo) httpPost(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errors.New(resp.Status)
	}
	return nil
}
