package cloudconfig

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Settings are the node agent's settings from a cloud-config: the coreos.*
// sections (etcd2, fleet, update, locksmith) read the way Pith's KV,
// scheduler and updater understand them, overridden by the pith: section.
// Zero values mean "not set; use the agent's default".
type Settings struct {
	Cluster  ClusterSettings  `json:"cluster"`
	KV       KVSettings       `json:"kv"`
	Schedule ScheduleSettings `json:"schedule"`
	Update   UpdateSettings   `json:"update"`
}

// ClusterSettings say how to find and join the cluster.
type ClusterSettings struct {
	Name        string            `json:"name,omitempty"`
	NodeName    string            `json:"node_name,omitempty"`
	AdvertiseIP string            `json:"advertise_ip,omitempty"`
	Peers       []string          `json:"peers,omitempty"` // name=peer URL
	Discovery   string            `json:"discovery,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// KVSettings configure the etcd-v2-compatible store.
type KVSettings struct {
	DataDir           string        `json:"data_dir,omitempty"`
	ClientPort        int           `json:"client_port,omitempty"`
	PeerPort          int           `json:"peer_port,omitempty"`
	SnapshotCount     int           `json:"snapshot_count,omitempty"`
	HeartbeatInterval time.Duration `json:"heartbeat_interval,omitempty"`
	ElectionTimeout   time.Duration `json:"election_timeout,omitempty"`
	MaxVoters         int           `json:"max_voters,omitempty"`
	CertFile          string        `json:"cert_file,omitempty"`
	KeyFile           string        `json:"key_file,omitempty"`
	TrustedCAFile     string        `json:"trusted_ca_file,omitempty"`
	ClientCertAuth    bool          `json:"client_cert_auth,omitempty"`
}

// ScheduleSettings configure the scheduler.
type ScheduleSettings struct {
	Enabled           *bool         `json:"enabled,omitempty"`
	AgentTTL          time.Duration `json:"agent_ttl,omitempty"`
	ReconcileInterval time.Duration `json:"reconcile_interval,omitempty"`
}

// UpdateSettings configure updates and reboot coordination.
type UpdateSettings struct {
	Channel        string        `json:"channel,omitempty"`
	Server         string        `json:"server,omitempty"`
	RebootStrategy string        `json:"reboot_strategy,omitempty"`
	WindowStart    string        `json:"window_start,omitempty"`
	WindowLength   time.Duration `json:"window_length,omitempty"`
	Group          string        `json:"group,omitempty"` // locksmith's reboot group
	MaxHolders     int           `json:"max_holders,omitempty"`
	CheckInterval  time.Duration `json:"check_interval,omitempty"`
	PublicKeys     []string      `json:"public_keys,omitempty"`
	VerifyTimeout  time.Duration `json:"verify_timeout,omitempty"`
	UnitSettle     time.Duration `json:"unit_settle,omitempty"`
	PreReboot      []string      `json:"pre_reboot,omitempty"`
	PostReboot     []string      `json:"post_reboot,omitempty"`
}

func first[T comparable](vals ...T) T {
	var zero T
	for _, v := range vals {
		if v != zero {
			return v
		}
	}
	return zero
}

func dur(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}

// urlPort returns the port of the first URL in a comma-separated list.
func urlPort(list string) int {
	first, _, _ := strings.Cut(list, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

func urlIP(list string) string {
	first, _, _ := strings.Cut(list, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		return ip.String()
	}
	return ""
}

// Settings merges the coreos.* and pith: sections (pith: wins). Call it on
// a validated config after address substitution.
func (c *Config) Settings() Settings {
	e2, fl, up, ls, p := c.CoreOS.Etcd2, c.CoreOS.Fleet, c.CoreOS.Update, c.CoreOS.Locksmith, c.Pith
	var s Settings

	var peers []string
	for _, m := range strings.Split(e2.InitialCluster, ",") {
		if m = strings.TrimSpace(m); strings.Contains(m, "=") {
			peers = append(peers, m)
		}
	}
	if len(p.Cluster.Peers) > 0 {
		peers = p.Cluster.Peers
	}
	meta := map[string]string{}
	for _, kv := range strings.Split(fl.Metadata, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			meta[k] = v
		}
	}
	for k, v := range p.Cluster.Metadata {
		meta[k] = v
	}
	if len(meta) == 0 {
		meta = nil
	}
	s.Cluster = ClusterSettings{
		Name:        first(p.Cluster.Name, e2.InitialClusterToken),
		NodeName:    first(p.Cluster.NodeName, e2.Name, c.Hostname),
		AdvertiseIP: first(p.Cluster.AdvertiseIP, fl.PublicIP, urlIP(e2.InitialAdvertisePeerURLs), urlIP(e2.AdvertiseClientURLs)),
		Peers:       peers,
		Discovery:   first(p.Cluster.Discovery, e2.Discovery),
		Metadata:    meta,
	}
	// pith: wins, also over etcd2's other way of bootstrapping.
	if len(p.Cluster.Peers) > 0 {
		s.Cluster.Discovery = ""
	}
	if p.Cluster.Discovery != "" {
		s.Cluster.Peers = nil
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	k := p.KV
	s.KV = KVSettings{
		DataDir:           first(k.DataDir, e2.DataDir),
		ClientPort:        first(k.ClientPort, urlPort(e2.ListenClientURLs), urlPort(e2.AdvertiseClientURLs)),
		PeerPort:          first(k.PeerPort, urlPort(e2.ListenPeerURLs), urlPort(e2.InitialAdvertisePeerURLs)),
		SnapshotCount:     first(k.SnapshotCount, e2.SnapshotCount),
		HeartbeatInterval: first(dur(k.HeartbeatInterval), ms(e2.HeartbeatInterval)),
		ElectionTimeout:   first(dur(k.ElectionTimeout), ms(e2.ElectionTimeout)),
		MaxVoters:         k.MaxVoters,
		CertFile:          first(k.TLS.CertFile, e2.CertFile),
		KeyFile:           first(k.TLS.KeyFile, e2.KeyFile),
		TrustedCAFile:     first(k.TLS.TrustedCAFile, e2.TrustedCAFile, e2.CAFile),
		ClientCertAuth:    k.TLS.ClientCertAuth || e2.ClientCertAuth,
	}
	s.Schedule = ScheduleSettings{
		Enabled:           p.Schedule.Enabled,
		AgentTTL:          first(dur(p.Schedule.AgentTTL), dur(fl.AgentTTL)),
		ReconcileInterval: first(dur(p.Schedule.ReconcileInterval), time.Duration(fl.EngineReconcileInterval*float64(time.Second))),
	}
	// locksmith's strategy supersedes update's, as on CoreOS.
	s.Update = UpdateSettings{
		Channel:        first(p.Update.Channel, up.Group),
		Server:         first(p.Update.Server, up.Server),
		RebootStrategy: first(p.Update.RebootStrategy, ls.Strategy, up.RebootStrategy),
		WindowStart:    first(p.Update.WindowStart, ls.WindowStart),
		WindowLength:   first(dur(p.Update.WindowLength), dur(ls.WindowLength)),
		Group:          ls.Group,
		MaxHolders:     p.Update.MaxHolders,
		CheckInterval:  dur(p.Update.CheckInterval),
		PublicKeys:     p.Update.PublicKeys,
		VerifyTimeout:  dur(p.Update.VerifyTimeout),
		UnitSettle:     dur(p.Update.UnitSettle),
		PreReboot:      p.Update.PreReboot,
		PostReboot:     p.Update.PostReboot,
	}
	return s
}
