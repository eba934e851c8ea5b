package daemon

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/pki"
)

func TestApplySecurity(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Init(dir, "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.IssueMember(dir, "n1", nil); err != nil {
		t.Fatal(err)
	}
	member := pki.TLSInfo{CertFile: filepath.Join(dir, "n1.crt"), KeyFile: filepath.Join(dir, "n1.key"), TrustedCAFile: filepath.Join(dir, "ca.crt")}
	adminCert := member
	adminCert.CertFile, adminCert.KeyFile = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	defaults := func() KVConfig {
		return KVConfig{
			ListenClientURLs: []string{"http://127.0.0.1:2379"}, AdvertiseClientURLs: []string{"http://localhost:2379"},
			ListenPeerURLs: []string{"http://127.0.0.1:2380"}, InitialAdvertisePeerURLs: []string{"http://localhost:2380"},
		}
	}
	for _, tc := range []struct {
		name    string
		edit    func(*KVConfig)
		err     string // substring; "" for success
		log     string // substring of the log
		check   func(*KVConfig) bool
		checkIs string
	}{
		{name: "no CA, loopback", edit: func(*KVConfig) {}, log: "loopback only"},
		{name: "no CA, open plain HTTP warns", edit: func(f *KVConfig) { f.ListenClientURLs = []string{"http://0.0.0.0:2379"} },
			log: "plain HTTP without a cluster CA"},
		{name: "peer CA without client CA", edit: func(f *KVConfig) { f.PeerTLS.TrustedCAFile = member.TrustedCAFile }, err: "--peer-trusted-ca-file without"},
		{name: "CA upgrades loopback defaults", edit: func(f *KVConfig) { f.ClientTLS = member; f.InitialCluster = "a=http://127.0.0.1:2380" },
			log: "mutual TLS", checkIs: "every URL https, peer port members only with the client files",
			check: func(f *KVConfig) bool {
				all := append(append(append(append([]string{}, f.ListenClientURLs...), f.AdvertiseClientURLs...), f.ListenPeerURLs...), f.InitialAdvertisePeerURLs...)
				for _, u := range all {
					if !strings.HasPrefix(u, "https://") {
						return false
					}
				}
				return f.InitialCluster == "a=https://127.0.0.1:2380" && f.ClientTLS.ClientCertAuth && f.PeerTLS.ClientCertAuth &&
					f.PeerTLS.Role == pki.Member && f.PeerTLS.CertFile == member.CertFile && f.PeerTLS.TrustedCAFile == member.TrustedCAFile
			}},
		{name: "CA refuses an open http URL", edit: func(f *KVConfig) {
			f.ClientTLS = member
			f.AdvertiseClientURLs = []string{"http://10.0.0.1:2379"}
		}, err: "must be https://: http://10.0.0.1:2379"},
		{name: "CA refuses an http peer in the initial cluster", edit: func(f *KVConfig) {
			f.ClientTLS = member
			f.InitialCluster = "a=http://127.0.0.1:2380,b=http://10.0.0.2:2380"
		}, err: "http://10.0.0.2:2380"},
		{name: "CA without this member's certificate", edit: func(f *KVConfig) { f.ClientTLS = pki.TLSInfo{TrustedCAFile: member.TrustedCAFile} },
			err: "needs --cert-file and --key-file"},
		{name: "CA with an admin certificate as the member's", edit: func(f *KVConfig) { f.ClientTLS = adminCert }, err: "must have the member role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := defaults()
			tc.edit(&f)
			var logb bytes.Buffer
			err := f.applySecurity(slog.New(slog.NewTextHandler(&logb, nil)))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logb.String(), tc.log) {
				t.Fatalf("log %q lacks %q", logb.String(), tc.log)
			}
			if tc.check != nil && !tc.check(&f) {
				t.Fatalf("%s: got %+v", tc.checkIs, f)
			}
		})
	}
}
