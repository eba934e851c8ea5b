package main

// Multi-process update test: three real pithd processes on 127.0.0.1 with
// the etcd-lock strategy follow a channel served from this test. Each
// "reboot" is a hook that records itself; the test then kills that pithd
// and starts it again as the machine would come back: on slot b, running
// the new version. All three must update, and never more than one machine
// may be between its reboot and its return (max holders 1).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pith-os/pith/internal/pithdtest"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/slot"
)

type updMember struct {
	name, id, client, peer, dir string
	disk, esp, cmdline, hook    string
	cluster, token              string // --initial-cluster, --initial-cluster-token
	proc                        *pithdtest.Proc
	logs                        int
}

// updKeys writes the channel's public key where --update-keys reads it.
func updKeys(t *testing.T, dir string, pub ed25519.PublicKey) string {
	t.Helper()
	keys := filepath.Join(dir, "keys")
	os.MkdirAll(keys, 0o755)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	if err := os.WriteFile(filepath.Join(keys, "release.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return keys
}

// updMembers makes n members of one cluster, each with an A/B disk image
// booted from slot a (marked good), its ESP and its kernel command line.
func updMembers(t *testing.T, dir string, n int, token string) []*updMember {
	t.Helper()
	var ms []*updMember
	var ic []string
	for i := 0; i < n; i++ {
		m := &updMember{name: fmt.Sprintf("u%d", i), id: fmt.Sprintf("%032x", 0xb0+i),
			client: fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t)),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t)),
			dir:    filepath.Join(dir, fmt.Sprintf("u%d", i)), token: token}
		os.MkdirAll(filepath.Join(m.dir, "esp", "pith"), 0o755)
		m.disk, m.esp = filepath.Join(m.dir, "disk.img"), filepath.Join(m.dir, "esp")
		m.cmdline, m.hook = filepath.Join(m.dir, "cmdline"), filepath.Join(m.dir, "rebooted")
		os.WriteFile(m.disk, nil, 0o600)
		os.Truncate(m.disk, 24<<20)
		if out, err := exec.Command("sgdisk", "-o", "-n", "1:2048:+2M", "-c", "1:EFI-SYSTEM",
			"-n", "3:0:+8M", "-c", "3:USR-A", "-n", "4:0:+8M", "-c", "4:USR-B", m.disk).CombinedOutput(); err != nil {
			t.Fatalf("sgdisk: %v\n%s", err, out)
		}
		slot.WritePrio(m.disk, slot.A, slot.Prio{Priority: 1, Successful: true})
		os.MkdirAll(filepath.Join(m.esp, "grub"), 0o755)
		if err := slot.WriteEnvFile(filepath.Join(m.esp, slot.EnvPathOnESP), slot.InitialEnv()); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(m.cmdline, []byte("pith.slot=a\n"), 0o644)
		ms = append(ms, m)
		ic = append(ic, fmt.Sprintf("%s=%s", m.name, m.peer))
	}
	for _, m := range ms {
		m.cluster = strings.Join(ic, ",")
	}
	return ms
}

// start runs the member's pithd with the etcd-lock strategy following
// server, as a machine running version; each start logs to a new file
// (the harness shows them all if the test fails, and kills what still
// runs). Its "reboot" touches m.hook.
func (m *updMember) start(t *testing.T, bin, server, keys, running string) {
	t.Helper()
	m.logs++
	log := filepath.Join(m.dir, fmt.Sprintf("pithd-%d.log", m.logs))
	m.proc = pithdtest.Start(t, bin, log, "run", "--name", m.name, "--data-dir", filepath.Join(m.dir, "data"),
		"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", m.cluster, "--initial-cluster-token", m.token,
		"--unit-backend", "none", "--fleet-socket", "none", "--machine-id", m.id,
		"--update-server", server, "--update-keys", keys, "--update-conf", "/nonexistent",
		"--update-disk", m.disk, "--update-esp", m.esp, "--update-cmdline", m.cmdline,
		"--update-running-version", running, "--reboot-strategy", "etcd-lock",
		"--reboot-lock-retry", "200ms", "--update-reboot-command", "touch "+m.hook)
}

// status is the member's update status (pithctl update status).
func (m *updMember) status() (node.UpdateStatus, error) {
	var st node.UpdateStatus
	resp, err := http.Get(m.client + "/pith/v1/update")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func TestUpdateProcessesEtcdLock(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pithd processes")
	}
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatal("sgdisk not installed: run hack/install-deps.sh (make deps)")
	}
	dir := t.TempDir()
	bin := pithdtest.Binary(t)

	// The channel: 1.1.0 on stable, signed with a fresh key.
	pub, key, _ := ed25519.GenerateKey(nil)
	repo := filepath.Join(dir, "repo")
	usr, usrRoot := verityUSR(t, bytes.Repeat([]byte("pith usr 1.1.0\n"), 200000))
	src := func(name, file string, b []byte) channels.PayloadSource {
		return channels.PayloadSource{Name: name, File: file, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
	}
	if _, err := channels.Publish(repo, channels.Release{Channel: "stable", Version: "1.1.0", Platform: "linux/" + runtime.GOARCH, USRVerityHash: usrRoot,
		Payloads: []channels.PayloadSource{src("usr", "usr", usr), src("kernel", "vmlinuz", []byte("kernel 1.1.0")), src("initrd", "initrd", []byte("initrd 1.1.0"))},
	}, []ed25519.PrivateKey{key}, nil); err != nil {
		t.Fatal(err)
	}
	srv, err := channels.NewServer(repo, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	keys := updKeys(t, dir, pub)
	ms := updMembers(t, dir, 3, "update-test")
	for _, m := range ms {
		m.start(t, bin, ts.URL, keys, "1.0.0")
	}
	kill := func(m *updMember) { m.proc.Kill() }
	start := func(m *updMember, running string) { m.start(t, bin, ts.URL, keys, running) }
	ctx := context.Background()
	kv, err := rebootlock.NewEtcdKV([]string{ms[0].client, ms[1].client, ms[2].client})
	if err != nil {
		t.Fatal(err)
	}
	sem := &rebootlock.Semaphore{KV: kv}

	// Reboot each machine as its hook fires; never two down at once.
	updated := map[string]bool{}
	for len(updated) < len(ms) {
		var down *updMember
		pithdtest.Poll(t, "a reboot", func() (bool, string) {
			var fired []string
			for _, m := range ms {
				if _, err := os.Stat(m.hook); err == nil && !updated[m.name] {
					fired = append(fired, m.name)
					if down == nil {
						down = m
					}
				}
			}
			if len(fired) > 1 {
				t.Fatalf("%v rebooted at once with max holders 1", fired)
			}
			return down != nil, fmt.Sprint(len(updated), " updated")
		})
		st, err := sem.Status(ctx)
		if err != nil || len(st.Holders) != 1 || st.Holders[0] != down.id {
			t.Fatalf("%s rebooted; semaphore %+v %v, want it as the only holder", down.name, st, err)
		}
		// The machine comes back on slot b with the new release.
		kill(down)
		os.WriteFile(down.cmdline, []byte("pith.slot=b\n"), 0o644)
		start(down, "1.1.0")
		pithdtest.Poll(t, down.name+" marked good and unlocked", func() (bool, string) {
			// Other hooks first: if one fired and down is still not back
			// afterwards, it fired while down was (back is monotonic).
			var fired []string
			for _, m := range ms {
				if _, err := os.Stat(m.hook); err == nil && m != down && !updated[m.name] {
					fired = append(fired, m.name)
				}
			}
			s, err := down.status()
			if err != nil || len(s.History) == 0 || s.History[len(s.History)-1].Kind != "updated" {
				if len(fired) > 0 {
					t.Fatalf("%v rebooted while %s was still rebooting", fired, down.name)
				}
				return false, fmt.Sprint(s.Phase, err)
			}
			st, err := sem.Status(ctx)
			if err != nil {
				return false, err.Error()
			}
			for _, h := range st.Holders {
				if h == down.id {
					if len(fired) > 0 {
						t.Fatalf("%v rebooted while %s held the lock", fired, down.name)
					}
					return false, "still holds the lock"
				}
			}
			return true, ""
		})
		if _, err := os.Stat(down.hook); err == nil {
			os.Remove(down.hook) // a second reboot would show up again
		}
		updated[down.name] = true
	}
	for _, m := range ms {
		st, err := slot.Status(m.disk, filepath.Join(m.esp, slot.EnvPathOnESP))
		if err != nil || st.Saved != "b" || !st.Parts[slot.B].Successful {
			t.Fatalf("%s boot state %+v %v", m.name, st, err)
		}
		if b, _ := os.ReadFile(filepath.Join(m.esp, "pith", "vmlinuz-b")); string(b) != "kernel 1.1.0" {
			t.Fatalf("%s kernel b %q", m.name, b)
		}
	}
	if st, err := sem.Status(ctx); err != nil || st.Semaphore != 1 || len(st.Holders) != 0 {
		t.Fatalf("final semaphore %+v %v", st, err)
	}
}
