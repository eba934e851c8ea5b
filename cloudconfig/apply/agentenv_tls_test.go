package apply

import (
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
)

// TestAgentEnvTLS: with a certificate (pith.kv.tls or coreos.etcd2) the URLs
// pith writes itself are https://, the TLS files reach pithd, and a trusted
// CA turns client certificate checks on; the configs are valid as written.
func TestAgentEnvTLS(t *testing.T) {
	const tlsKV = "  kv:\n    tls:\n      cert_file: /etc/pith/tls/member.crt\n      key_file: /etc/pith/tls/member.key\n      trusted_ca_file: /etc/pith/tls/ca.crt\n"
	for _, tc := range []struct {
		name, ud string
		want     map[string]string
	}{
		{"pith.kv.tls with advertise_ip", "#cloud-config\npith:\n  cluster:\n    advertise_ip: 10.0.0.5\n" + tlsKV, map[string]string{
			"ETCD_ADVERTISE_CLIENT_URLS":       "https://10.0.0.5:2379",
			"ETCD_INITIAL_ADVERTISE_PEER_URLS": "https://10.0.0.5:2380",
			"ETCD_LISTEN_CLIENT_URLS":          "https://0.0.0.0:2379",
			"ETCD_LISTEN_PEER_URLS":            "https://0.0.0.0:2380",
			"ETCD_CERT_FILE":                   "/etc/pith/tls/member.crt",
			"ETCD_KEY_FILE":                    "/etc/pith/tls/member.key",
			"ETCD_TRUSTED_CA_FILE":             "/etc/pith/tls/ca.crt",
		}},
		{"etcd2 TLS with the legacy etcd addresses", "#cloud-config\ncoreos:\n  etcd:\n    addr: 10.0.0.6:4001\n    peer-addr: 10.0.0.6:7001\n  etcd2:\n    cert_file: /c.pem\n    key_file: /k.pem\n", map[string]string{
			"ETCD_ADVERTISE_CLIENT_URLS":       "https://10.0.0.6:4001",
			"ETCD_INITIAL_ADVERTISE_PEER_URLS": "https://10.0.0.6:7001",
			"ETCD_CERT_FILE":                   "/c.pem",
			"ETCD_KEY_FILE":                    "/k.pem",
			"ETCD_CLIENT_CERT_AUTH":            "",
		}},
		{"pith.kv.tls wins over etcd2", "#cloud-config\ncoreos:\n  etcd2:\n    cert_file: /old.pem\n    key_file: /old.key\npith:\n  cluster:\n    advertise_ip: fd00::7\n" + tlsKV, map[string]string{
			"ETCD_CERT_FILE":             "/etc/pith/tls/member.crt",
			"ETCD_ADVERTISE_CLIENT_URLS": "https://[fd00::7]:2379",
		}},
		{"no TLS stays plain HTTP", "#cloud-config\npith:\n  cluster:\n    advertise_ip: 10.0.0.5\n", map[string]string{
			"ETCD_ADVERTISE_CLIENT_URLS": "http://10.0.0.5:2379",
			"ETCD_LISTEN_PEER_URLS":      "http://0.0.0.0:2380",
			"ETCD_CERT_FILE":             "",
			"ETCD_CLIENT_CERT_AUTH":      "",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rep := cloudconfig.ParseCloudConfig([]byte(tc.ud))
			if c == nil || rep.HasErrors() {
				t.Fatalf("invalid: %s", rep.Format("in"))
			}
			env := AgentEnv(c)
			for k, v := range tc.want {
				if env[k] != v {
					t.Errorf("%s = %q, want %q", k, env[k], v)
				}
			}
			// Whatever TLS is on, no URL pith wrote is left http:// (the
			// bug: TLS files written, URLs still plain).
			if env["ETCD_CERT_FILE"] != "" {
				for k, v := range env {
					if strings.HasSuffix(k, "_URLS") && strings.Contains(v, "http://") {
						t.Errorf("%s = %q with TLS on", k, v)
					}
				}
			}
		})
	}
}
