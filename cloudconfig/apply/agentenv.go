package apply

import (
	"cmp"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
)

// AgentDropIn is the drop-in through which cloud-config reaches `pithd
// run`: etcd's ETCD_* and fleet's FLEET_* variables, which pithd reads for
// the flags of the same names, as CoreOS's etcd2.service and fleet.service
// read them from coreos-cloudinit's drop-ins. It lives under /run because
// it is rewritten from user-data on every boot.
const AgentDropIn = "/run/systemd/system/pithd.service.d/20-cloudinit.conf"

// AgentSecretsFile holds the variables that are credentials (passwords,
// the discovery URL whose token is the discovery service's only key), mode
// 0600, read through EnvironmentFile=: systemd shows every Environment=
// value of a unit to any local user (systemctl show), an EnvironmentFile
// only by its path. systemd expands no % specifiers in it.
const AgentSecretsFile = "/run/pith/pithd-secrets.env"

// AgentUnit is the unit the drop-in configures.
const AgentUnit = "pithd.service"

// AgentEnv returns the environment for `pithd run` from a cloud-config:
// coreos.etcd2 and coreos.fleet key for key (ETCD_<KEY>, FLEET_<KEY>), the
// legacy coreos.etcd's addresses, and the pith: section on top. Variable
// names come from node's settings table (node.EnvOf, node.EnvForKey), the
// one pithd reads them by.
func AgentEnv(c *cloudconfig.Config) map[string]string {
	env := map[string]string{}
	v := node.EnvOf
	structEnv(env, "coreos.etcd2", "ETCD_", reflect.ValueOf(c.CoreOS.Etcd2))
	// URLs pith writes itself are https:// once a certificate is given
	// (pith.kv.tls or etcd2's cert_file): TLS files alone turn nothing on.
	tls := cloudconfig.EffectiveKVTLS(c)
	scheme := "http"
	if tls.On() {
		scheme = "https"
	}
	e1 := c.CoreOS.Etcd
	set := func(k, v string) {
		if v != "" {
			env[k] = v
		}
	}
	if e1.Addr != "" && env[v("advertise-client-urls")] == "" {
		set(v("advertise-client-urls"), scheme+"://"+e1.Addr)
	}
	if e1.PeerAddr != "" && env[v("initial-advertise-peer-urls")] == "" {
		set(v("initial-advertise-peer-urls"), scheme+"://"+e1.PeerAddr)
	}
	if env[v("name")] == "" {
		set(v("name"), e1.Name)
	}
	if env[v("discovery")] == "" {
		set(v("discovery"), e1.Discovery)
	}
	structEnv(env, "coreos.fleet", "FLEET_", reflect.ValueOf(c.CoreOS.Fleet))

	p := c.Pith
	set(v("initial-cluster-token"), p.Cluster.Name)
	set(v("name"), p.Cluster.NodeName)
	// pith: wins, also over the other way of bootstrapping.
	if p.Cluster.Discovery != "" {
		env[v("discovery")] = p.Cluster.Discovery
		delete(env, v("initial-cluster"))
	}
	if len(p.Cluster.Peers) > 0 {
		env[v("initial-cluster")] = strings.Join(p.Cluster.Peers, ",")
		delete(env, v("discovery"))
	}
	cport, pport := p.KV.ClientPort, p.KV.PeerPort
	if ip := p.Cluster.AdvertiseIP; ip != "" {
		host := ip
		if strings.Contains(ip, ":") {
			host = "[" + ip + "]"
		}
		env[v("advertise-client-urls")] = fmt.Sprintf("%s://%s:%d", scheme, host, orInt(cport, 2379))
		env[v("initial-advertise-peer-urls")] = fmt.Sprintf("%s://%s:%d", scheme, host, orInt(pport, 2380))
		env[v("public-ip")] = ip
		// Listen on every address so both loopback and peers reach it.
		env[v("listen-client-urls")] = fmt.Sprintf("%s://0.0.0.0:%d", scheme, orInt(cport, 2379))
		env[v("listen-peer-urls")] = fmt.Sprintf("%s://0.0.0.0:%d", scheme, orInt(pport, 2380))
	}
	set(v("data-dir"), p.KV.DataDir)
	if p.KV.SnapshotCount > 0 {
		env[v("snapshot-count")] = strconv.Itoa(p.KV.SnapshotCount)
	}
	if p.KV.MaxVoters > 0 {
		env[v("max-voters")] = strconv.Itoa(p.KV.MaxVoters)
	}
	s := c.Settings()
	if p.KV.HeartbeatInterval != "" {
		env[v("heartbeat-interval")] = strconv.FormatInt(s.KV.HeartbeatInterval.Milliseconds(), 10)
	}
	if p.KV.ElectionTimeout != "" {
		env[v("election-timeout")] = strconv.FormatInt(s.KV.ElectionTimeout.Milliseconds(), 10)
	}
	set(v("cert-file"), p.KV.TLS.CertFile)
	set(v("key-file"), p.KV.TLS.KeyFile)
	set(v("trusted-ca-file"), p.KV.TLS.TrustedCAFile)
	// (A trusted CA alone already makes pithd require client
	// certificates: it is the cluster CA.)
	if p.KV.TLS.ClientCertAuth {
		env[v("client-cert-auth")] = "true"
	}
	if len(p.Cluster.Metadata) > 0 {
		var kv []string
		for _, k := range sortedKeys(p.Cluster.Metadata) {
			kv = append(kv, k+"="+p.Cluster.Metadata[k])
		}
		env[v("metadata")] = strings.Join(kv, ",")
	}
	set(v("agent-ttl"), p.Schedule.AgentTTL)
	set(v("engine-reconcile-interval"), p.Schedule.ReconcileInterval)
	if p.Schedule.Enabled != nil {
		env[v("schedule")] = strconv.FormatBool(*p.Schedule.Enabled)
	}
	// A new member's name defaults to the hostname, as documented for
	// pith.cluster.node_name (etcd2's name defaulted to the machine ID on
	// CoreOS, which the image still uses when user-data configures no
	// cluster): the config's hostname, else the one the datasource set,
	// which systemd's %H reads when pithd starts. It is not --name: the
	// drop-in is written on every boot, and a member with KV state (one
	// an older release named by machine ID) keeps its name; pithd, which
	// sees the data dir, decides.
	if len(env) > 0 && env[v("name")] == "" {
		env[v("new-member-name")] = cmp.Or(c.Hostname, "%H")
	}
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

// structEnv adds a variable for each set field of a coreos.* section:
// the table's for keys pithd reads, PREFIX<KEY> for the others (as
// coreos-cloudinit wrote them; pithd ignores them).
func structEnv(env map[string]string, section, prefix string, v reflect.Value) {
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
		name, ok := node.EnvForKey(section + "." + key)
		if !ok {
			name = prefix + strings.ToUpper(key)
		}
		env[name] = s
	}
}

// isSecretEnv reports whether a variable carries a credential.
func isSecretEnv(name string) bool {
	return strings.Contains(name, "PASSWORD") || name == node.EnvOf("discovery")
}

// splitSecrets moves the credentials out of env into their own map.
func splitSecrets(env map[string]string) (plain, secret map[string]string) {
	plain, secret = map[string]string{}, map[string]string{}
	for k, v := range env {
		if isSecretEnv(k) {
			secret[k] = v
		} else {
			plain[k] = v
		}
	}
	return plain, secret
}

// agentDropIn renders env as a [Service] drop-in, naming AgentSecretsFile
// when there are secrets. Values are quoted for systemd; % is left alone
// so specifiers like %H expand, as CoreOS users relied on (etcd2's
// "http://%H:2380").
func agentDropIn(env map[string]string, secrets bool) (string, error) {
	var b strings.Builder
	b.WriteString("# Written by pithd firstboot from user-data; rewritten every boot.\n[Service]\n")
	if secrets {
		fmt.Fprintf(&b, "EnvironmentFile=%s\n", AgentSecretsFile)
	}
	if err := writeEnvLines(&b, "Environment=", env); err != nil {
		return "", err
	}
	return b.String(), nil
}

// agentSecrets renders the secrets file: KEY="value" lines, quoted as
// systemd reads an EnvironmentFile.
func agentSecrets(env map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString("# Written by pithd firstboot from user-data (mode 0600); rewritten every boot.\n")
	if err := writeEnvLines(&b, "", env); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeEnvLines(b *strings.Builder, prefix string, env map[string]string) error {
	for _, k := range sortedKeys(env) {
		v := env[k]
		if strings.ContainsAny(v, "\n\r") {
			return fmt.Errorf("%s: value contains a newline", k)
		}
		v = strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `"`, `\"`)
		if prefix != "" {
			fmt.Fprintf(b, "%s\"%s=%s\"\n", prefix, k, v)
		} else {
			fmt.Fprintf(b, "%s=\"%s\"\n", k, v)
		}
	}
	return nil
}

// agentConfig is what pithd.service gets from user-data: the drop-in and
// the secrets file, to tell whether pithd must restart.
func (a *Applier) agentConfig() []byte {
	return append(readOrNil(a.path(AgentDropIn)), readOrNil(a.path(AgentSecretsFile))...)
}
