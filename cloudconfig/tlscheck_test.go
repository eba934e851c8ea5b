package cloudconfig

import "testing"

// TestValidateTLS: KV TLS settings that cannot work together are errors at
// the offending line; the secure setup is clean; plain HTTP off loopback
// works with one warning per document.
func TestValidateTLS(t *testing.T) {
	const (
		hdr    = "#cloud-config\n"
		member = "    cert_file: /etc/pith/tls/member.crt\n    key_file: /etc/pith/tls/member.key\n"
		ca     = "    trusted_ca_file: /etc/pith/tls/ca.crt\n"
	)
	E, W := SeverityError, SeverityWarning
	for _, tc := range []struct {
		name, in string
		want     []want
	}{
		{"secure pith.kv.tls", hdr + "pith:\n  kv:\n    tls:\n      cert_file: /etc/pith/tls/member.crt\n      key_file: /etc/pith/tls/member.key\n      trusted_ca_file: /etc/pith/tls/ca.crt\n      client_cert_auth: true\n", nil},
		{"secure etcd2 with https URLs", hdr + "coreos:\n  etcd2:\n" + member + ca + "    client_cert_auth: true\n    advertise_client_urls: https://$private_ipv4:2379\n    listen_client_urls: https://0.0.0.0:2379\n    initial_advertise_peer_urls: https://$private_ipv4:2380\n    listen_peer_urls: https://0.0.0.0:2380\n", nil},
		{"TLS without a CA, https URLs", hdr + "coreos:\n  etcd2:\n" + member + "    listen_client_urls: https://0.0.0.0:2379\n", nil},
		{"cert without key", hdr + "pith:\n  kv:\n    tls:\n      cert_file: /etc/pith/tls/member.crt\n", []want{{5, 18, E, "pith.kv.tls.cert_file is set without a key_file"}}},
		{"key without cert", hdr + "coreos:\n  etcd2:\n    key_file: /k.pem\n", []want{{4, 15, E, "coreos.etcd2.key_file is set without a cert_file"}}},
		{"peer key without peer cert", hdr + "coreos:\n  etcd2:\n    peer_key_file: /k.pem\n", []want{{4, 20, E, "peer_key_file is set without a cert_file"}}},
		{"client_cert_auth without CA", hdr + "pith:\n  kv:\n    tls:\n      cert_file: /c\n      key_file: /k\n      client_cert_auth: true\n", []want{{7, 25, E, "needs trusted_ca_file"}}},
		{"peer_client_cert_auth without CA", hdr + "coreos:\n  etcd2:\n" + member + "    peer_client_cert_auth: true\n", []want{{6, 28, E, "needs peer_trusted_ca_file"}}},
		{"peer_client_cert_auth with the client CA", hdr + "coreos:\n  etcd2:\n" + member + ca + "    peer_client_cert_auth: true\n", nil},
		{"https without a certificate", hdr + "coreos:\n  etcd2:\n    advertise_client_urls: https://$private_ipv4:2379\n", []want{{4, 28, E, "no certificate is set"}}},
		{"https peer with only a peer certificate", hdr + "coreos:\n  etcd2:\n    peer_cert_file: /p.crt\n    peer_key_file: /p.key\n    listen_peer_urls: https://0.0.0.0:2380\n    listen_client_urls: https://0.0.0.0:2379\n", []want{{7, 25, E, "no certificate is set"}}},
		{"CA and an http URL", hdr + "coreos:\n  etcd2:\n" + member + ca + "    listen_client_urls: https://0.0.0.0:2379,http://127.0.0.1:2379\n", []want{{7, 25, E, "TLS-only cluster"}}},
		{"CA and http peers", hdr + "pith:\n  cluster:\n    peers: [a=http://10.0.0.1:2380]\n  kv:\n    tls:\n      cert_file: /c\n      key_file: /k\n      trusted_ca_file: /ca\n", []want{{4, 13, E, "TLS-only cluster"}}},
		{"certificate but http URL", hdr + "coreos:\n  etcd2:\n" + member + "    advertise_client_urls: http://$private_ipv4:2379\n", []want{{6, 28, E, "TLS would stay off"}}},
		{"plain HTTP warns once", hdr + "coreos:\n  etcd2:\n    advertise_client_urls: http://$private_ipv4:2379\n    listen_client_urls: http://0.0.0.0:2379\n", []want{{4, 28, W, "plain HTTP (and 1 more KV URLs here)"}}},
		{"plain HTTP on loopback is quiet", hdr + "coreos:\n  etcd2:\n    listen_client_urls: http://127.0.0.1:2379,http://localhost:4001,http://[::1]:2379\n", nil},
		{"advertise_ip without TLS", hdr + "pith:\n  cluster:\n    advertise_ip: $private_ipv4\n", []want{{4, 19, W, "without pith.kv.tls"}}},
		{"advertise_ip with TLS", hdr + "pith:\n  cluster:\n    advertise_ip: $private_ipv4\n  kv:\n    tls:\n      cert_file: /c\n      key_file: /k\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkReport(t, Validate([]byte(tc.in)), tc.want)
		})
	}
}
