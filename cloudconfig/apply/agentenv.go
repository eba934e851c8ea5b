package apply

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
)

// AgentDropIn is the drop-in through which cloud-config reaches `pithd
// run`: etcd's ETCD_* and fleet's FLEET_* variables, which pithd reads for
// the flags of the same names, as CoreOS's etcd2.service and fleet.service
// read them from coreos-cloudinit's drop-ins. It lives under /run because
// it is rewritten from user-data on every boot.
const AgentDropIn = "/run/systemd/system/pithd.service.d/20-cloudinit.conf"

// AgentUnit is the unit the drop-in configures.
const AgentUnit = "pithd.service"

// AgentEnv returns the environment for `pithd run` from a cloud-config:
// coreos.etcd2 and coreos.fleet key for key (ETCD_<KEY>, FLEET_<KEY>), the
// legacy coreos.etcd's addresses, and the pith: section on top.
func AgentEnv(c *cloudconfig.Config) map[string]string {
	env := map[string]string{}
	structEnv(env, "ETCD_", reflect.ValueOf(c.CoreOS.Etcd2))
	e1 := c.CoreOS.Etcd
	set := func(k, v string) {
		if v != "" {
			env[k] = v
		}
	}
	if e1.Addr != "" && env["ETCD_ADVERTISE_CLIENT_URLS"] == "" {
		set("ETCD_ADVERTISE_CLIENT_URLS", "http://"+e1.Addr)
	}
	if e1.PeerAddr != "" && env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "" {
		set("ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://"+e1.PeerAddr)
	}
	if env["ETCD_NAME"] == "" {
		set("ETCD_NAME", e1.Name)
	}
	if env["ETCD_DISCOVERY"] == "" {
		set("ETCD_DISCOVERY", e1.Discovery)
	}
	structEnv(env, "FLEET_", reflect.ValueOf(c.CoreOS.Fleet))

	p := c.Pith
	set("ETCD_INITIAL_CLUSTER_TOKEN", p.Cluster.Name)
	set("ETCD_NAME", p.Cluster.NodeName)
	// pith: wins, also over the other way of bootstrapping.
	if p.Cluster.Discovery != "" {
		env["ETCD_DISCOVERY"] = p.Cluster.Discovery
		delete(env, "ETCD_INITIAL_CLUSTER")
	}
	if len(p.Cluster.Peers) > 0 {
		env["ETCD_INITIAL_CLUSTER"] = strings.Join(p.Cluster.Peers, ",")
		delete(env, "ETCD_DISCOVERY")
	}
	cport, pport := p.KV.ClientPort, p.KV.PeerPort
	if ip := p.Cluster.AdvertiseIP; ip != "" {
		host := ip
		if strings.Contains(ip, ":") {
			host = "[" + ip + "]"
		}
		env["ETCD_ADVERTISE_CLIENT_URLS"] = fmt.Sprintf("http://%s:%d", host, orInt(cport, 2379))
		env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] = fmt.Sprintf("http://%s:%d", host, orInt(pport, 2380))
		env["FLEET_PUBLIC_IP"] = ip
		// Listen on every address so both loopback and peers reach it.
		env["ETCD_LISTEN_CLIENT_URLS"] = fmt.Sprintf("http://0.0.0.0:%d", orInt(cport, 2379))
		env["ETCD_LISTEN_PEER_URLS"] = fmt.Sprintf("http://0.0.0.0:%d", orInt(pport, 2380))
	}
	set("ETCD_DATA_DIR", p.KV.DataDir)
	if p.KV.SnapshotCount > 0 {
		env["ETCD_SNAPSHOT_COUNT"] = strconv.Itoa(p.KV.SnapshotCount)
	}
	if p.KV.MaxVoters > 0 {
		env["ETCD_MAX_VOTERS"] = strconv.Itoa(p.KV.MaxVoters)
	}
	s := c.Settings()
	if p.KV.HeartbeatInterval != "" {
		env["ETCD_HEARTBEAT_INTERVAL"] = strconv.FormatInt(s.KV.HeartbeatInterval.Milliseconds(), 10)
	}
	if p.KV.ElectionTimeout != "" {
		env["ETCD_ELECTION_TIMEOUT"] = strconv.FormatInt(s.KV.ElectionTimeout.Milliseconds(), 10)
	}
	set("ETCD_CERT_FILE", p.KV.TLS.CertFile)
	set("ETCD_KEY_FILE", p.KV.TLS.KeyFile)
	set("ETCD_TRUSTED_CA_FILE", p.KV.TLS.TrustedCAFile)
	if p.KV.TLS.ClientCertAuth {
		env["ETCD_CLIENT_CERT_AUTH"] = "true"
	}
	if len(p.Cluster.Metadata) > 0 {
		var kv []string
		for _, k := range sortedKeys(p.Cluster.Metadata) {
			kv = append(kv, k+"="+p.Cluster.Metadata[k])
		}
		env["FLEET_METADATA"] = strings.Join(kv, ",")
	}
	set("FLEET_AGENT_TTL", p.Schedule.AgentTTL)
	return env
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// structEnv adds PREFIX<KEY> for each set field of a coreos.* section.
func structEnv(env map[string]string, prefix string, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("yaml")
		if key == "" || t.Field(i).Tag.Get("deprecated") != "" {
			continue
		}
		f := v.Field(i)
		if f.IsZero() {
			continue
		}
		var s string
		switch f.Kind() {
		case reflect.String:
			s = f.String()
		case reflect.Bool:
			s = strconv.FormatBool(f.Bool())
		case reflect.Int:
			s = strconv.FormatInt(f.Int(), 10)
		case reflect.Float64:
			s = strconv.FormatFloat(f.Float(), 'f', -1, 64)
		default:
			continue
		}
		env[prefix+strings.ToUpper(key)] = s
	}
}

// agentDropIn renders env as a [Service] drop-in. Values are quoted for
// systemd; % is left alone so specifiers like %H expand, as CoreOS users
// relied on (etcd2's "http://%H:2380").
func agentDropIn(env map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString("# Written by pithd firstboot from user-data; rewritten every boot.\n[Service]\n")
	for _, k := range sortedKeys(env) {
		v := env[k]
		if strings.ContainsAny(v, "\n\r") {
			return "", fmt.Errorf("%s: value contains a newline", k)
		}
		v = strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `"`, `\"`)
		fmt.Fprintf(&b, "Environment=\"%s=%s\"\n", k, v)
	}
	return b.String(), nil
}
