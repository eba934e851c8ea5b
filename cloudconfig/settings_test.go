package cloudconfig

import (
	"reflect"
	"testing"
	"time"
)

func TestSettings(t *testing.T) {
	coreos := `#cloud-config
hostname: h1
coreos:
  etcd2:
    name: e1
    initial-cluster-token: tok
    initial-cluster: e1=http://10.0.0.1:2380,e2=http://10.0.0.2:2380
    initial-advertise-peer-urls: http://10.0.0.1:2380
    listen-client-urls: http://0.0.0.0:4001
    heartbeat-interval: 150
    election-timeout: 1500
    data-dir: /var/lib/etcd2
  fleet:
    metadata: role=web,region=eu
    agent-ttl: 45s
    engine-reconcile-interval: 2.5
  update:
    group: beta
    reboot-strategy: reboot
  locksmith:
    strategy: etcd-lock
    window-start: Thu 04:00
    window-length: 1h
`
	c, rep := ParseCloudConfig([]byte(coreos))
	if rep.HasErrors() {
		t.Fatal(rep.Format("x"))
	}
	got := c.Settings()
	want := Settings{
		Cluster:  ClusterSettings{Name: "tok", NodeName: "e1", AdvertiseIP: "10.0.0.1", Peers: []string{"e1=http://10.0.0.1:2380", "e2=http://10.0.0.2:2380"}, Metadata: map[string]string{"role": "web", "region": "eu"}},
		KV:       KVSettings{DataDir: "/var/lib/etcd2", ClientPort: 4001, PeerPort: 2380, HeartbeatInterval: 150 * time.Millisecond, ElectionTimeout: 1500 * time.Millisecond},
		Schedule: ScheduleSettings{AgentTTL: 45 * time.Second, ReconcileInterval: 2500 * time.Millisecond},
		Update:   UpdateSettings{Channel: "beta", RebootStrategy: "etcd-lock", WindowStart: "Thu 04:00", WindowLength: time.Hour},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("coreos settings\n got %+v\nwant %+v", got, want)
	}

	// pith: wins over coreos:.
	c, rep = ParseCloudConfig([]byte(coreos + "pith:\n  cluster:\n    name: demo\n    peers: [x=http://10.1.0.1:2380]\n    metadata: {role: db}\n  kv: {client-port: 2379}\n  update: {channel: stable, reboot-strategy: \"off\", verify-timeout: 3m, pre-reboot: [kubectl drain x], post_reboot: [kubectl uncordon x]}\n"))
	if rep.HasErrors() {
		t.Fatal(rep.Format("x"))
	}
	got = c.Settings()
	if got.Cluster.Name != "demo" || !reflect.DeepEqual(got.Cluster.Peers, []string{"x=http://10.1.0.1:2380"}) || got.Cluster.Metadata["role"] != "db" ||
		got.Cluster.Metadata["region"] != "eu" || got.KV.ClientPort != 2379 || got.Update.Channel != "stable" || got.Update.RebootStrategy != "off" ||
		got.Update.VerifyTimeout != 3*time.Minute || !reflect.DeepEqual(got.Update.PreReboot, []string{"kubectl drain x"}) ||
		!reflect.DeepEqual(got.Update.PostReboot, []string{"kubectl uncordon x"}) {
		t.Errorf("pith override: %+v", got)
	}
}
