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
			for name := range AgentEnv(&c) {
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
