package cloudconfig

import "strings"

// checkUnhonoured reports coreos.* values Pith has no mechanism for and
// that depend on the value (keys ignored whatever their value carry an
// `ignored` tag in types.go instead). The rule (README, "Keys Pith cannot
// honour"): what CoreOS would have run is a warning, the rest of the
// config applies; what would make this node join the wrong cluster is an
// error.
func checkUnhonoured(c *Config, rep *Report) {
	e2, fl := c.CoreOS.Etcd2, c.CoreOS.Fleet
	if e2.DiscoverySRV != "" {
		p := "coreos.etcd2.discovery_srv"
		// Without SRV lookups the node would found a cluster of its own:
		// a second cluster under the first one's name.
		rep.Errorf(c.Pos(p), p, "%s: Pith does not find its peers through DNS SRV records; list them in initial_cluster (or pith.cluster.peers), or use discovery", p)
	}
	if v := strings.ToLower(e2.DiscoveryFallback); v == "proxy" {
		p := "coreos.etcd2.discovery_fallback"
		rep.Warnf(c.Pos(p), p, "%s: proxy is ignored: Pith has no etcd proxy mode; when discovery fails pithd exits and systemd starts it again (etcd's \"exit\")", p)
	}
	if v := strings.ToLower(e2.Proxy); v == "on" || v == "readonly" {
		p := "coreos.etcd2.proxy"
		rep.Warnf(c.Pos(p), p, "%s: %s is ignored: Pith has no etcd proxy mode; this node runs a KV member (a non-voter once pith.kv.max_voters voters exist), so it must be in initial_cluster or join through discovery", p, v)
	}
	if e2.ForceNewCluster {
		p := "coreos.etcd2.force_new_cluster"
		rep.Warnf(c.Pos(p), p, "%s is ignored: Pith does not restart a cluster from one member's data", p)
	}
	if fl.DisableEngine {
		p := "coreos.fleet.disable_engine"
		rep.Warnf(c.Pos(p), p, "%s is ignored: Pith's scheduling engine runs on whichever member leads the KV, so it cannot be kept off this machine (its units still run here; pith.schedule.enabled: false turns the whole scheduler off)", p)
	}
}
