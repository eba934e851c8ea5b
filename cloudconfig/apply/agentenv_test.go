package apply

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
)

// setKey sets the dotted cloud-config key ("pith.kv.data_dir") of c to a
// value of its type, and reports whether the key exists.
func setKey(c *cloudconfig.Config, key string) bool {
	v := reflect.ValueOf(c).Elem()
	for _, name := range strings.Split(key, ".") {
		if v.Kind() != reflect.Struct {
			return false
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Tag.Get("yaml") == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return false
		}
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("7s") // a duration too, for pith.*'s durations
	case reflect.Int:
		v.SetInt(7)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Float64:
		v.SetFloat(7)
	case reflect.Slice:
		v.Set(reflect.ValueOf([]string{"a=http://10.0.0.7:2380"}))
	case reflect.Map:
		v.Set(reflect.ValueOf(map[string]string{"role": "web"}))
	case reflect.Pointer:
		if v.Type().Elem().Kind() != reflect.Bool {
			return false
		}
		v.Set(reflect.ValueOf(new(bool)))
	default:
		return false
	}
	return true
}

// TestAgentEnvMatchesTable: the writer puts each cloud-config key of
// node's settings table into the table's variable, which pithd reads for
// the table's flag (agent/daemon's TestFlagsMatchTable), and a coreos.*
// key the table does not list never lands in a variable pithd reads.
func TestAgentEnvMatchesTable(t *testing.T) {
	read := map[string]node.Setting{}
	for _, s := range node.Settings() {
		if s.Env != "" {
			read[s.Env] = s
		}
		for _, key := range s.Keys {
			var c cloudconfig.Config
			if !setKey(&c, key) {
				t.Errorf("--%s: %s is not a cloud-config key", s.Flag, key)
				continue
			}
			if _, ok := AgentEnv(&c)[s.Env]; !ok {
				t.Errorf("%s does not reach %s (--%s): %v", key, s.Env, s.Flag, AgentEnv(&c))
			}
		}
	}
	for _, section := range []struct {
		name string
		typ  reflect.Type
	}{{"coreos.etcd2", reflect.TypeFor[cloudconfig.Etcd2]()}, {"coreos.fleet", reflect.TypeFor[cloudconfig.Fleet]()}} {
		for i := 0; i < section.typ.NumField(); i++ {
			key := section.name + "." + section.typ.Field(i).Tag.Get("yaml")
			var c cloudconfig.Config
			if !setKey(&c, key) {
				continue
			}
			for name, val := range AgentEnv(&c) {
				if name == node.EnvOf("new-member-name") && val == "%H" {
					continue // the hostname default of any pithd config
				}
				if s, ok := read[name]; ok && !containsKey(s.Keys, key) {
					t.Errorf("%s is written to %s, which pithd reads for --%s, but the table does not list it there", key, name, s.Flag)
				}
			}
		}
	}
}

func containsKey(keys []string, key string) bool {
	for _, k := range keys {
		if k == key {
			return true
		}
	}
	return false
}

// TestAgentEnvKeyDecisions: the cloud-config keys issue 17 found ignored
// reach pithd's variables (node's table gives their flags).
func TestAgentEnvKeyDecisions(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string // "" = absent
	}{
		// The hostname default names new members only (not --name: a
		// member an older release named by machine ID keeps its name).
		{"new member name defaults to the config's hostname", "hostname: web1\npith:\n  cluster: {name: c}\n",
			map[string]string{"ETCD_NAME": "", "PITH_NEW_MEMBER_NAME": "web1", "ETCD_INITIAL_CLUSTER_TOKEN": "c"}},
		{"new member name defaults to the running hostname", "coreos:\n  etcd2: {initial-cluster-token: c}\n",
			map[string]string{"ETCD_NAME": "", "PITH_NEW_MEMBER_NAME": "%H"}},
		{"explicit name wins", "hostname: web1\npith:\n  cluster: {node-name: n1}\n", map[string]string{"ETCD_NAME": "n1", "PITH_NEW_MEMBER_NAME": ""}},
		{"etcd2 name wins", "hostname: web1\ncoreos:\n  etcd2: {name: e1}\n", map[string]string{"ETCD_NAME": "e1", "PITH_NEW_MEMBER_NAME": ""}},
		{"no cluster settings: the image's default stays", "hostname: web1\n", map[string]string{"ETCD_NAME": "", "PITH_NEW_MEMBER_NAME": ""}},
		{"scheduler off", "pith:\n  schedule: {enabled: false}\n", map[string]string{"PITH_SCHEDULE": "false"}},
		{"scheduler on", "pith:\n  schedule: {enabled: true}\n", map[string]string{"PITH_SCHEDULE": "true"}},
		{"disable_engine does not turn the scheduler off", "coreos:\n  fleet: {disable-engine: true}\n", map[string]string{"PITH_SCHEDULE": ""}},
		{"fleet's reconcile interval", "coreos:\n  fleet: {engine-reconcile-interval: 0.5}\n", map[string]string{"FLEET_ENGINE_RECONCILE_INTERVAL": "0.5"}},
		{"pith's reconcile interval wins", "coreos:\n  fleet: {engine-reconcile-interval: 0.5}\npith:\n  schedule: {reconcile-interval: 3s}\n",
			map[string]string{"FLEET_ENGINE_RECONCILE_INTERVAL": "3s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rep := cloudconfig.ParseCloudConfig([]byte("#cloud-config\n" + tc.in))
			if rep.HasErrors() {
				t.Fatal(rep.Format("in"))
			}
			env := AgentEnv(c)
			for k, v := range tc.want {
				if got, ok := env[k]; got != v || ok != (v != "") {
					t.Errorf("%s = %q (set %v), want %q; env %v", k, got, ok, v, env)
				}
			}
		})
	}
}
