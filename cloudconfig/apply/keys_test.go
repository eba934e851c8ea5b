package apply

import (
	"reflect"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
)

// TestNoKeySilentlyIgnored: every key of the coreos.* sections pithd
// reads is applied (node's table gives it a variable, or settings.json
// carries it to the updater), tagged ignored/deprecated (a warning names
// it), or reported by value (cloudconfig's checkUnhonoured; the values it
// reports are checked here to be reported).
func TestNoKeySilentlyIgnored(t *testing.T) {
	viaSettings := map[string]bool{ // cloudconfig.Config.Settings -> agent/daemon's readUpdateSettings
		"coreos.update.reboot_strategy": true, "coreos.update.group": true, "coreos.update.server": true,
		"coreos.locksmith.group": true, "coreos.locksmith.strategy": true,
		"coreos.locksmith.window_start": true, "coreos.locksmith.window_length": true,
	}
	byValue := map[string]string{ // key -> a value that must be reported
		"coreos.etcd2.discovery_srv":      "discovery-srv: example.com",
		"coreos.etcd2.discovery_fallback": "discovery-fallback: proxy",
		"coreos.etcd2.proxy":              "proxy: readonly",
		"coreos.etcd2.force_new_cluster":  "force-new-cluster: true",
		"coreos.fleet.disable_engine":     "disable-engine: true",
	}
	for _, s := range []struct {
		name string
		typ  reflect.Type
	}{
		{"coreos.etcd2", reflect.TypeFor[cloudconfig.Etcd2]()}, {"coreos.etcd", reflect.TypeFor[cloudconfig.Etcd]()},
		{"coreos.fleet", reflect.TypeFor[cloudconfig.Fleet]()}, {"coreos.update", reflect.TypeFor[cloudconfig.Update]()},
		{"coreos.locksmith", reflect.TypeFor[cloudconfig.Locksmith]()},
	} {
		for i := 0; i < s.typ.NumField(); i++ {
			f := s.typ.Field(i)
			key := s.name + "." + f.Tag.Get("yaml")
			if _, ok := node.EnvForKey(key); ok || viaSettings[key] || f.Tag.Get("ignored") != "" || f.Tag.Get("deprecated") != "" {
				continue
			}
			kv, ok := byValue[key]
			if !ok {
				t.Errorf("%s is neither applied, nor tagged ignored, nor reported by value", key)
				continue
			}
			section := s.name[len("coreos."):]
			_, rep := cloudconfig.ParseCloudConfig([]byte("#cloud-config\ncoreos:\n  " + section + ":\n    " + kv + "\n"))
			if len(rep.Entries) == 0 {
				t.Errorf("%s: %q is not reported", key, kv)
			}
		}
	}
}
