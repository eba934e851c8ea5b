package daemon

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Root's sockets (pithd.sock, fleet.sock) are 0600 whatever the umask, in
// a directory made if missing, replacing a stale socket of an earlier run.
func TestListenRootSocket(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stale bool
		sub   string
	}{
		{"fresh", false, ""},
		{"stale socket", true, ""},
		{"missing directory", false, "run/pith"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), tc.sub, "x.sock")
			if tc.stale {
				old, err := net.Listen("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				old.(*net.UnixListener).SetUnlinkOnClose(false)
				old.Close()
			}
			ln, err := listenRootSocket(sock)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fi, err := os.Stat(sock)
			if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v %v, want a 0600 socket", sock, fi.Mode(), err)
			}
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.Close()
				}
			}()
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.Close()
			if _, err := os.Stat(sock + ".new"); !os.IsNotExist(err) {
				t.Errorf("temporary socket left: %v", err)
			}
		})
	}
}
