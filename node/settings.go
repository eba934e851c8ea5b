package node

import "slices"

// Setting is one `pithd run` flag: the environment variable pithd reads
// for it when the command line does not give it, and the cloud-config keys
// that the first-boot stage writes into that variable (in pithd.service's
// drop-in). Env is empty for flags no variable sets; Keys is empty for
// variables no cloud-config key reaches.
type Setting struct {
	Flag string
	Env  string
	Keys []string
}

// settings lists every flag of `pithd run`. etcd's and fleet's variable
// names are kept so cloud-config's coreos.etcd2 and coreos.fleet sections
// map onto pithd as they did onto etcd2.service and fleet.service. Update
// flags have no variable: they come from settings.json and update.conf.
var settings = []Setting{
	// The KV and the cluster's raft: etcd's flags and ETCD_* variables.
	{Flag: "kv"},
	{Flag: "name", Env: "ETCD_NAME", Keys: []string{"coreos.etcd2.name", "coreos.etcd.name", "pith.cluster.node_name"}},
	{Flag: "new-member-name", Env: "PITH_NEW_MEMBER_NAME"},
	{Flag: "data-dir", Env: "ETCD_DATA_DIR", Keys: []string{"coreos.etcd2.data_dir", "pith.kv.data_dir"}},
	{Flag: "listen-client-urls", Env: "ETCD_LISTEN_CLIENT_URLS", Keys: []string{"coreos.etcd2.listen_client_urls", "pith.cluster.advertise_ip"}},
	{Flag: "advertise-client-urls", Env: "ETCD_ADVERTISE_CLIENT_URLS", Keys: []string{"coreos.etcd2.advertise_client_urls", "coreos.etcd.addr", "pith.cluster.advertise_ip"}},
	{Flag: "listen-peer-urls", Env: "ETCD_LISTEN_PEER_URLS", Keys: []string{"coreos.etcd2.listen_peer_urls", "pith.cluster.advertise_ip"}},
	{Flag: "initial-advertise-peer-urls", Env: "ETCD_INITIAL_ADVERTISE_PEER_URLS", Keys: []string{"coreos.etcd2.initial_advertise_peer_urls", "coreos.etcd.peer_addr", "pith.cluster.advertise_ip"}},
	{Flag: "initial-cluster", Env: "ETCD_INITIAL_CLUSTER", Keys: []string{"coreos.etcd2.initial_cluster", "pith.cluster.peers"}},
	{Flag: "initial-cluster-state", Env: "ETCD_INITIAL_CLUSTER_STATE", Keys: []string{"coreos.etcd2.initial_cluster_state"}},
	{Flag: "initial-cluster-token", Env: "ETCD_INITIAL_CLUSTER_TOKEN", Keys: []string{"coreos.etcd2.initial_cluster_token", "pith.cluster.name"}},
	{Flag: "discovery", Env: "ETCD_DISCOVERY", Keys: []string{"coreos.etcd2.discovery", "coreos.etcd.discovery", "pith.cluster.discovery"}},
	{Flag: "heartbeat-interval", Env: "ETCD_HEARTBEAT_INTERVAL", Keys: []string{"coreos.etcd2.heartbeat_interval", "pith.kv.heartbeat_interval"}},
	{Flag: "election-timeout", Env: "ETCD_ELECTION_TIMEOUT", Keys: []string{"coreos.etcd2.election_timeout", "pith.kv.election_timeout"}},
	{Flag: "snapshot-count", Env: "ETCD_SNAPSHOT_COUNT", Keys: []string{"coreos.etcd2.snapshot_count", "pith.kv.snapshot_count"}},
	{Flag: "snapshot-interval", Env: "ETCD_SNAPSHOT_INTERVAL"},
	{Flag: "max-voters", Env: "ETCD_MAX_VOTERS", Keys: []string{"pith.kv.max_voters"}},
	{Flag: "max-watchers", Env: "ETCD_MAX_WATCHERS"},
	{Flag: "max-request-bytes", Env: "ETCD_MAX_REQUEST_BYTES"},
	{Flag: "max-value-bytes", Env: "ETCD_MAX_VALUE_BYTES"},
	{Flag: "enable-pprof", Env: "ETCD_ENABLE_PPROF", Keys: []string{"coreos.etcd2.enable_pprof"}},
	{Flag: "unix-socket"},
	{Flag: "cert-file", Env: "ETCD_CERT_FILE", Keys: []string{"coreos.etcd2.cert_file", "pith.kv.tls.cert_file"}},
	{Flag: "key-file", Env: "ETCD_KEY_FILE", Keys: []string{"coreos.etcd2.key_file", "pith.kv.tls.key_file"}},
	{Flag: "trusted-ca-file", Env: "ETCD_TRUSTED_CA_FILE", Keys: []string{"coreos.etcd2.trusted_ca_file", "pith.kv.tls.trusted_ca_file"}},
	{Flag: "client-cert-auth", Env: "ETCD_CLIENT_CERT_AUTH", Keys: []string{"coreos.etcd2.client_cert_auth", "pith.kv.tls.client_cert_auth"}},
	{Flag: "peer-cert-file", Env: "ETCD_PEER_CERT_FILE", Keys: []string{"coreos.etcd2.peer_cert_file"}},
	{Flag: "peer-key-file", Env: "ETCD_PEER_KEY_FILE", Keys: []string{"coreos.etcd2.peer_key_file"}},
	{Flag: "peer-trusted-ca-file", Env: "ETCD_PEER_TRUSTED_CA_FILE", Keys: []string{"coreos.etcd2.peer_trusted_ca_file"}},
	{Flag: "peer-client-cert-auth", Env: "ETCD_PEER_CLIENT_CERT_AUTH", Keys: []string{"coreos.etcd2.peer_client_cert_auth"}},

	// The scheduler: fleet's flags and FLEET_* variables.
	{Flag: "schedule", Env: "PITH_SCHEDULE", Keys: []string{"pith.schedule.enabled"}},
	{Flag: "unit-backend", Env: "FLEET_UNIT_BACKEND"},
	{Flag: "sim-units-dir"},
	{Flag: "machine-id", Env: "FLEET_MACHINE_ID"},
	{Flag: "public-ip", Env: "FLEET_PUBLIC_IP", Keys: []string{"coreos.fleet.public_ip", "pith.cluster.advertise_ip"}},
	{Flag: "metadata", Env: "FLEET_METADATA", Keys: []string{"coreos.fleet.metadata", "pith.cluster.metadata"}},
	{Flag: "agent-ttl", Env: "FLEET_AGENT_TTL", Keys: []string{"coreos.fleet.agent_ttl", "pith.schedule.agent_ttl"}},
	{Flag: "engine-reconcile-interval", Env: "FLEET_ENGINE_RECONCILE_INTERVAL", Keys: []string{"coreos.fleet.engine_reconcile_interval", "pith.schedule.reconcile_interval"}},
	{Flag: "fleet-socket", Env: "FLEET_FLEET_SOCKET"},

	// Updates: settings.json (coreos.update, coreos.locksmith, pith.update)
	// and /etc/coreos/update.conf, not the environment.
	{Flag: "update-server"},
	{Flag: "update-channel"},
	{Flag: "reboot-strategy"},
	{Flag: "reboot-window-start"},
	{Flag: "reboot-window-length"},
	{Flag: "reboot-group"},
	{Flag: "reboot-lock-max"},
	{Flag: "update-interval"},
	{Flag: "reboot-lock-retry"},
	{Flag: "update-verify-timeout"},
	{Flag: "update-unit-settle"},
	{Flag: "update-keys"},
	{Flag: "update-disk"},
	{Flag: "update-esp"},
	{Flag: "update-state-dir"},
	{Flag: "update-running-version"},
	{Flag: "update-reboot-command"},
	{Flag: "update-cmdline"},
	{Flag: "update-settings"},
	{Flag: "update-os-release"},
	{Flag: "update-conf"},
}

// Settings returns the table (a copy: callers may not change it).
func Settings() []Setting {
	out := slices.Clone(settings)
	for i := range out {
		out[i].Keys = slices.Clone(out[i].Keys)
	}
	return out
}

// EnvOf returns the variable pithd reads for flag ("" if none). It panics
// on a flag that is not in the table: that is a mistake in Pith, which the
// tests of the table's users catch.
func EnvOf(flag string) string {
	for _, s := range settings {
		if s.Flag == flag {
			return s.Env
		}
	}
	panic("node: no pithd setting " + flag)
}

// EnvForKey returns the variable the cloud-config key (dotted, as in
// "coreos.etcd2.name") is written to, and false when pithd reads none for
// it. A key that several variables derive from (pith.cluster.advertise_ip)
// gives the first.
func EnvForKey(key string) (string, bool) {
	for _, s := range settings {
		if s.Env != "" && slices.Contains(s.Keys, key) {
			return s.Env, true
		}
	}
	return "", false
}
