package cloudconfig

import (
	"fmt"
	"strings"
)

// The KV's TLS settings come from pith.kv.tls and coreos.etcd2 (pith.kv.tls
// wins key by key, as the pithd drop-in is written). pithd's rules, which
// these checks say before boot instead of at pithd's start:
//   - a certificate and its key go together;
//   - a trusted CA (the cluster CA) means client certificates are always
//     required and only TLS is served: every client and peer URL is
//     https://;
//   - an https:// URL needs a certificate (the peer port falls back to the
//     client one);
//   - without a CA, plain http:// URLs off loopback work, with a warning.

// tlsSetting is one effective value and the key it came from.
type tlsSetting struct {
	value string
	path  string
}

func (s tlsSetting) set() bool { return s.value != "" }

// pickTLS returns the pith.kv.tls value if given, else coreos.etcd2's.
func pickTLS(pithVal, pithKey, etcdVal, etcdKey string) tlsSetting {
	if pithVal != "" {
		return tlsSetting{pithVal, "pith.kv.tls." + pithKey}
	}
	if etcdVal != "" {
		return tlsSetting{etcdVal, "coreos.etcd2." + etcdKey}
	}
	return tlsSetting{}
}

func boolSetting(v bool, path string) tlsSetting {
	if v {
		return tlsSetting{"true", path}
	}
	return tlsSetting{}
}

// KVTLS is the KV's effective TLS configuration from a cloud-config.
type KVTLS struct {
	CertFile, KeyFile, TrustedCAFile string
	ClientCertAuth                   bool
}

// On reports whether the KV serves TLS (a certificate is given).
func (t KVTLS) On() bool { return t.CertFile != "" }

// EffectiveKVTLS merges pith.kv.tls over coreos.etcd2's TLS keys.
func EffectiveKVTLS(c *Config) KVTLS {
	p, e := c.Pith.KV.TLS, c.CoreOS.Etcd2
	return KVTLS{
		CertFile:       pickTLS(p.CertFile, "cert_file", e.CertFile, "cert_file").value,
		KeyFile:        pickTLS(p.KeyFile, "key_file", e.KeyFile, "key_file").value,
		TrustedCAFile:  pickTLS(p.TrustedCAFile, "trusted_ca_file", e.TrustedCAFile, "trusted_ca_file").value,
		ClientCertAuth: p.ClientCertAuth || e.ClientCertAuth,
	}
}

// kvURL is one URL the user wrote for a KV port, and its key.
type kvURL struct {
	url, path string
	peer      bool
}

func userKVURLs(c *Config) []kvURL {
	var out []kvURL
	e := c.CoreOS.Etcd2
	list := func(v, key string, peer bool) {
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				out = append(out, kvURL{u, "coreos.etcd2." + key, peer})
			}
		}
	}
	list(e.AdvertiseClientURLs, "advertise_client_urls", false)
	list(e.ListenClientURLs, "listen_client_urls", false)
	list(e.InitialAdvertisePeerURLs, "initial_advertise_peer_urls", true)
	list(e.ListenPeerURLs, "listen_peer_urls", true)
	for _, m := range strings.Split(e.InitialCluster, ",") {
		if _, u, ok := strings.Cut(m, "="); ok && strings.TrimSpace(u) != "" {
			out = append(out, kvURL{strings.TrimSpace(u), "coreos.etcd2.initial_cluster", true})
		}
	}
	for i, m := range c.Pith.Cluster.Peers {
		if _, u, ok := strings.Cut(m, "="); ok && u != "" {
			out = append(out, kvURL{u, fmt.Sprintf("pith.cluster.peers[%d]", i), true})
		}
	}
	return out
}

func urlScheme(u string) string {
	s, _, ok := strings.Cut(u, "://")
	if !ok {
		return ""
	}
	return strings.ToLower(s)
}

// loopbackURL reports whether u's host is a loopback address or name; $
// substitutions such as $private_ipv4 are not.
func loopbackURL(u string) bool {
	_, rest, _ := strings.Cut(u, "://")
	host := rest
	if i := strings.IndexAny(host, "/?#"); i >= 0 {
		host = host[:i]
	}
	if strings.HasPrefix(host, "[") {
		h, _, _ := strings.Cut(host[1:], "]")
		return h == "::1"
	}
	host, _, _ = strings.Cut(host, ":")
	return host == "localhost" || strings.HasPrefix(host, "127.")
}

func checkTLS(c *Config, rep *Report) {
	p, e := c.Pith.KV.TLS, c.CoreOS.Etcd2
	cert := pickTLS(p.CertFile, "cert_file", e.CertFile, "cert_file")
	key := pickTLS(p.KeyFile, "key_file", e.KeyFile, "key_file")
	ca := pickTLS(p.TrustedCAFile, "trusted_ca_file", e.TrustedCAFile, "trusted_ca_file")
	auth := boolSetting(p.ClientCertAuth, "pith.kv.tls.client_cert_auth")
	if !auth.set() {
		auth = boolSetting(e.ClientCertAuth, "coreos.etcd2.client_cert_auth")
	}
	pairCheck(c, rep, cert, key)
	if auth.set() && !ca.set() {
		rep.Errorf(c.Pos(auth.path), auth.path, "%s needs trusted_ca_file: without a CA pithd cannot check client certificates", auth.path)
	}

	peerCert := pickTLS("", "", e.PeerCertFile, "peer_cert_file")
	peerKey := pickTLS("", "", e.PeerKeyFile, "peer_key_file")
	peerCA := pickTLS("", "", e.PeerTrustedCAFile, "peer_trusted_ca_file")
	pairCheck(c, rep, peerCert, peerKey)
	if e.PeerClientCertAuth && !peerCA.set() && !ca.set() {
		const k = "coreos.etcd2.peer_client_cert_auth"
		rep.Errorf(c.Pos(k), k, "%s needs peer_trusted_ca_file (or trusted_ca_file): without a CA pithd cannot check peer certificates", k)
	}
	// The peer port uses the client certificate when it has none of its own.
	peerHasCert := peerCert.set() || cert.set()

	// Plain HTTP off loopback is allowed without a CA, with one warning
	// per document (at the first such URL) rather than one per key.
	var plain []kvURL
	bad := map[string]bool{} // keys already reported invalid
	for _, e := range rep.Entries {
		if e.Severity == SeverityError {
			bad[e.Path] = true
		}
	}
	for _, u := range userKVURLs(c) {
		if bad[u.path] {
			continue
		}
		at := c.Pos(u.path)
		hasCert, certPath := cert.set(), cert.path
		if u.peer {
			hasCert = peerHasCert
			if peerCert.set() {
				certPath = peerCert.path
			}
		}
		switch urlScheme(u.url) {
		case "https":
			if !hasCert {
				rep.Errorf(at, u.path, "%s is https:// but no certificate is set (pith.kv.tls.cert_file and key_file): pithd cannot serve TLS", u.url)
			}
		case "http":
			switch {
			case ca.set():
				rep.Errorf(at, u.path, "%s is http:// but %s makes this a TLS-only cluster: use https://", u.url, ca.path)
			case hasCert:
				rep.Errorf(at, u.path, "%s is http:// although %s is set: TLS would stay off on it; use https://", u.url, certPath)
			case !loopbackURL(u.url):
				plain = append(plain, u)
			}
		}
	}
	const advertise = "pith.cluster.advertise_ip"
	switch {
	case len(plain) > 0:
		more := ""
		if len(plain) > 1 {
			more = fmt.Sprintf(" (and %d more KV URLs here)", len(plain)-1)
		}
		rep.Warnf(c.Pos(plain[0].path), plain[0].path, "%s is plain HTTP%s: anyone who reaches it can read and write the KV and run units; set pith.kv.tls (pith cluster init prints it) and use https://", plain[0].url, more)
	case c.Pith.Cluster.AdvertiseIP != "" && !cert.set():
		rep.Warnf(c.Pos(advertise), advertise, "%s without pith.kv.tls: the KV serves plain HTTP on every address, open to anyone who reaches it; set pith.kv.tls (pith cluster init prints it)", advertise)
	}
}

// pairCheck: a certificate and its key go together.
func pairCheck(c *Config, rep *Report, cert, key tlsSetting) {
	switch {
	case cert.set() && !key.set():
		rep.Errorf(c.Pos(cert.path), cert.path, "%s is set without a key_file: a certificate needs its private key", cert.path)
	case key.set() && !cert.set():
		rep.Errorf(c.Pos(key.path), key.path, "%s is set without a cert_file: a private key needs its certificate", key.path)
	}
}
