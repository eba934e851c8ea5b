package cloudconfig

import (
	"testing"
	"time"
)

// TestKeyDecisions: each cloud-config key issue 17 found silently ignored
// is now either applied (its setting is set, no warning) or reported, as
// README's table says. The applied ones' way to pithd is tested in
// cloudconfig/apply (AgentEnv) and agent/daemon (settings.json).
func TestKeyDecisions(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []want
		check    func(t *testing.T, s Settings)
	}{
		// Applied.
		{name: "max holders", in: "pith:\n  update: {max-holders: 3}\n", check: func(t *testing.T, s Settings) {
			if s.Update.MaxHolders != 3 {
				t.Errorf("max holders %d", s.Update.MaxHolders)
			}
		}},
		{name: "locksmith group", in: "coreos:\n  locksmith: {group: db}\n", check: func(t *testing.T, s Settings) {
			if s.Update.Group != "db" {
				t.Errorf("group %q", s.Update.Group)
			}
		}},
		{name: "schedule disabled", in: "pith:\n  schedule: {enabled: false}\n", check: func(t *testing.T, s Settings) {
			if s.Schedule.Enabled == nil || *s.Schedule.Enabled {
				t.Errorf("enabled %v", s.Schedule.Enabled)
			}
		}},
		{name: "pith reconcile interval", in: "pith:\n  schedule: {reconcile-interval: 750ms}\n", check: func(t *testing.T, s Settings) {
			if s.Schedule.ReconcileInterval != 750*time.Millisecond {
				t.Errorf("interval %v", s.Schedule.ReconcileInterval)
			}
		}},
		{name: "fleet reconcile interval", in: "coreos:\n  fleet: {engine-reconcile-interval: 0.5}\n", check: func(t *testing.T, s Settings) {
			if s.Schedule.ReconcileInterval != 500*time.Millisecond {
				t.Errorf("interval %v", s.Schedule.ReconcileInterval)
			}
		}},
		{name: "node name from hostname", in: "hostname: web1\npith:\n  cluster: {name: c}\n", check: func(t *testing.T, s Settings) {
			if s.Cluster.NodeName != "web1" {
				t.Errorf("node name %q", s.Cluster.NodeName)
			}
		}},
		{name: "disable_engine keeps the scheduler", in: "coreos:\n  fleet: {disable-engine: true}\n",
			want: []want{{3, 27, W, "disable_engine is ignored: Pith's scheduling engine runs on whichever member leads"}},
			check: func(t *testing.T, s Settings) {
				if s.Schedule.Enabled != nil {
					t.Errorf("disable_engine turned the scheduler off")
				}
			}},
		{name: "disable_engine false", in: "coreos:\n  fleet: {disable-engine: false}\n"},
		// Reported.
		{name: "locksmith endpoint and TLS", in: "coreos:\n  locksmith:\n    endpoint: https://10.0.0.1:2379\n    etcd_cafile: /etc/ca.pem\n    etcd_certfile: /etc/c.pem\n    etcd_keyfile: /etc/k.pem\n    etcd_username: u\n    etcd_password: p\n",
			want: []want{{4, 5, W, "reboot lock lives in this cluster's own KV"}, {5, 5, W, "own KV"}, {6, 5, W, "own KV"}, {7, 5, W, "own KV"}, {8, 5, W, "own KV"}, {9, 5, W, "own KV"}}},
		{name: "discovery_srv", in: "coreos:\n  etcd2: {discovery-srv: example.com}\n", want: []want{{3, 26, E, "DNS SRV"}}},
		{name: "discovery_proxy", in: "coreos:\n  etcd2: {discovery: 'https://d.example.com/t', discovery-proxy: 'http://proxy:3128'}\n",
			want: []want{{3, 49, W, "HTTPS_PROXY"}}},
		{name: "discovery_fallback proxy", in: "coreos:\n  etcd2: {discovery-fallback: proxy}\n", want: []want{{3, 31, W, "Pith has no etcd proxy mode"}}},
		{name: "discovery_fallback exit", in: "coreos:\n  etcd2: {discovery-fallback: exit}\n"},
		{name: "proxy on", in: "coreos:\n  etcd2: {proxy: 'on'}\n", want: []want{{3, 18, W, "on is ignored: Pith has no etcd proxy mode"}}},
		{name: "proxy readonly", in: "coreos:\n  etcd2: {proxy: readonly}\n", want: []want{{3, 18, W, "readonly is ignored"}}},
		{name: "proxy off", in: "coreos:\n  etcd2: {proxy: 'off'}\n"},
		{name: "force_new_cluster", in: "coreos:\n  etcd2: {force-new-cluster: true}\n", want: []want{{3, 30, W, "force_new_cluster is ignored"}}},
		{name: "force_new_cluster false", in: "coreos:\n  etcd2: {force-new-cluster: false}\n"},
		{name: "wal_dir", in: "coreos:\n  etcd2: {wal-dir: /var/lib/wal}\n", want: []want{{3, 11, W, "raft log stays under data_dir"}}},
		{name: "cors", in: "coreos:\n  etcd2: {cors: '*'}\n", want: []want{{3, 11, W, "no CORS headers"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rep := ParseCloudConfig([]byte("#cloud-config\n" + tc.in))
			checkReport(t, rep, tc.want)
			if tc.check != nil {
				if c == nil {
					t.Fatalf("the config did not parse, so its settings cannot be checked:\n%s", rep.Format("x"))
				}
				tc.check(t, c.Settings())
			}
		})
	}
}
