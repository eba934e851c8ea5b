package datasource

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// closedPort returns a loopback address nobody listens on (yet).
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestEC2WaitsForNetwork: first boot on EC2 runs before DHCP; the source
// must keep trying until the service answers, but only when the kernel
// line says ec2 (elsewhere the service is a guess and is not waited for).
func TestEC2WaitsForNetwork(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cmdline  string
		wait     time.Duration
		lateSrv  bool
		wantErr  string // "" means success
		notFound bool
	}{
		{"ec2 platform waits for a late service", "pith.platform=ec2", 0, true, "", false},
		{"aws alias waits too", "coreos.oem.id=aws", 0, true, "", false},
		{"other platform does not wait", "pith.platform=qemu", 0, true, "datasource not present", true},
		{"no platform does not wait", "", 0, true, "datasource not present", true},
		{"wait ends with not-found and the reason", "pith.platform=ec2", 1500 * time.Millisecond, false, "within 1.5s", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := closedPort(t)
			srv := &imds{v2: true, userData: "#cloud-config\n"}
			if tc.lateSrv {
				// The "network" comes up after a few failed tries.
				hs := &http.Server{Handler: srv}
				go func() {
					time.Sleep(2500 * time.Millisecond)
					l, err := net.Listen("tcp", addr)
					if err != nil {
						t.Errorf("late listener: %v", err)
						return
					}
					hs.Serve(l)
				}()
				defer hs.Close()
			}
			cfg := testConfig(t, "http://"+addr)
			cfg.Cmdline = &tc.cmdline
			cfg.RequestTimeout = 500 * time.Millisecond
			e := NewEC2(cfg)
			e.Wait = tc.wait
			r, err := e.Fetch(context.Background())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v, want the late service's data", err)
				}
				if r.Metadata.InstanceID != "i-0abc" || len(r.Metadata.SSHPublicKeys) != 1 {
					t.Fatalf("metadata %+v", r.Metadata)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrNotFound) != tc.notFound {
				t.Fatalf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tc.notFound, tc.notFound)
			}
		})
	}
}

// TestEC2WaitCancelled: a stop signal during the wait ends it at once.
func TestEC2WaitCancelled(t *testing.T) {
	cfg := testConfig(t, "http://"+closedPort(t))
	ec2 := "pith.platform=ec2"
	cfg.Cmdline = &ec2
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(300 * time.Millisecond); cancel() }()
	_, err := NewEC2(cfg).Fetch(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// aemmBinary is Amazon's EC2 metadata emulator (amazon-ec2-metadata-mock),
// installed by `make unit` into the tool cache and named by PITH_AEMM.
func aemmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PITH_AEMM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("PITH_AEMM: %v (make unit installs it)", err)
		}
		return p
	}
	if dir, err := os.UserCacheDir(); err == nil {
		if p := filepath.Join(dir, "pith", "tools", "ec2-metadata-mock"); fileExists(p) {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("PITH_AEMM is not set: CI runs the unit tests through make unit, which installs amazon-ec2-metadata-mock")
	}
	t.Skip("amazon-ec2-metadata-mock not installed: run make unit (it installs it into the tool cache)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestEC2AgainstAEMM reads Amazon's own metadata emulator on 127.0.0.1,
// IMDSv2-only and v1+v2, with the instance's values set by its config
// file. The emulator lists public keys as "0/" where EC2 says "0=name".
func TestEC2AgainstAEMM(t *testing.T) {
	bin := aemmBinary(t)
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAemmPithTestKeyAAAAAAAAAAAAAAAAAAAAAAAAA aemm"
	userData := "#cloud-config\nhostname: from-aemm\n"
	cfg := map[string]any{
		"metadata": map[string]any{"values": map[string]string{
			"instance-id":    "i-0aemm0pith0test0",
			"local-hostname": "ip-172-31-9-9.ec2.internal",
			"local-ipv4":     "172.31.9.9",
			"public-ipv4":    "198.51.100.99",
			"public-key":     key,
		}},
		"userdata": map[string]any{"values": map[string]string{"userdata": base64.StdEncoding.EncodeToString([]byte(userData))}},
	}
	for _, v2only := range []bool{true, false} {
		t.Run(fmt.Sprintf("imdsv2-only=%v", v2only), func(t *testing.T) {
			home := t.TempDir()
			cfgPath := filepath.Join(home, "aemm-config.json")
			b, _ := json.Marshal(cfg)
			if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
				t.Fatal(err)
			}
			addr := closedPort(t)
			_, port, _ := net.SplitHostPort(addr)
			args := []string{"-n", "127.0.0.1", "-p", port, "-c", cfgPath}
			if v2only {
				args = append(args, "-I")
			}
			var out bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Dir, cmd.Env = home, append(os.Environ(), "HOME="+home)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

			// The emulator is up once its port answers; EC2's own wait
			// (platform ec2) covers its start-up.
			c := testConfig(t, "http://"+addr)
			ec2 := "pith.platform=ec2"
			c.Cmdline = &ec2
			e := NewEC2(c)
			e.Wait = 30 * time.Second
			r, err := e.Fetch(context.Background())
			if err != nil {
				t.Fatalf("%v\nemulator log:\n%s", err, out.String())
			}
			md := r.Metadata
			if string(r.UserData) != userData || md.InstanceID != "i-0aemm0pith0test0" || md.Hostname != "ip-172-31-9-9.ec2.internal" ||
				md.PrivateIPv4.String() != "172.31.9.9" || md.PublicIPv4.String() != "198.51.100.99" ||
				len(md.SSHPublicKeys) != 1 || md.SSHPublicKeys[0] != key {
				t.Fatalf("from the emulator: user-data %q, metadata %+v\nemulator log:\n%s", r.UserData, md, out.String())
			}
			if v2only && !strings.Contains(out.String(), "GenerateToken") {
				t.Errorf("no token was requested from the IMDSv2-only emulator:\n%s", out.String())
			}
		})
	}
}
