package datasource

import (
	"context"
	"errors"
	"net"
	"net/http"
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
