package apply

import (
	"reflect"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
)

// TestNoKeySilentlyIgnored: every key of the coreos.* sections pithd
// reads is applied (node's table gives it a variable, or it reaches the
// update section of Settings, which settings.json carries to pithd's
// flags: agent/daemon's TestUpdateSettingsAllRead), or the user is told:
// an ignored/deprecated tag's warning, or cloudconfig's checkUnhonoured
// by value. Each claim is checked by parsing the key: a warning or error
// must name it, a settings key must change Settings().Update.
func TestNoKeySilentlyIgnored(t *testing.T) {
	viaSettings := map[string]string{ // key -> a value that must reach Settings().Update
		"coreos.update.reboot_strategy": "reboot-strategy: reboot",
		"coreos.update.group":           "group: beta",
		"coreos.update.server":          "server: https://u.example/",
		"coreos.locksmith.group":        "group: db",
		"coreos.locksmith.strategy":     "strategy: reboot",
		// window_start and window_length are only valid together.
		"coreos.locksmith.window_start":  "window-start: Sun 03:00\n    window-length: 1h",
		"coreos.locksmith.window_length": "window-length: 1h\n    window-start: Sun 03:00",
	}
	byValue := map[string]string{ // key -> a value that must be reported
		"coreos.etcd2.discovery_srv":      "discovery-srv: example.com",
		"coreos.etcd2.discovery_fallback": "discovery-fallback: proxy",
		"coreos.etcd2.proxy":              "proxy: readonly",
		"coreos.etcd2.force_new_cluster":  "force-new-cluster: true",
		"coreos.fleet.disable_engine":     "disable-engine: true",
	}
	named := func(rep *cloudconfig.Report, key string, sev cloudconfig.Severity) bool {
		for _, e := range rep.Entries {
			if e.Path == key && e.Severity == sev {
				return true
			}
		}
		return false
	}
	base, _ := cloudconfig.ParseCloudConfig([]byte("#cloud-config\n"))
	seen := map[string]bool{}
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
			seen[key] = true
			parse := func(kv string) (*cloudconfig.Config, *cloudconfig.Report) {
				c, rep := cloudconfig.ParseCloudConfig([]byte("#cloud-config\ncoreos:\n  " + s.name[len("coreos."):] + ":\n    " + kv + "\n"))
				if c == nil {
					t.Fatalf("%s: %q does not parse:\n%s", key, kv, rep.Format("x"))
				}
				return c, rep
			}
			switch {
			case f.Tag.Get("ignored") != "" || f.Tag.Get("deprecated") != "":
				// Tagged: the tag's warning must reach the user.
				if _, rep := parse(f.Tag.Get("yaml") + ": " + sampleValue(f.Type.Kind())); !named(rep, key, cloudconfig.SeverityWarning) {
					t.Errorf("%s is tagged ignored/deprecated but no warning names it:\n%s", key, rep.Format("x"))
				}
			case viaSettings[key] != "":
				c, rep := parse(viaSettings[key])
				if rep.HasErrors() || reflect.DeepEqual(c.Settings().Update, base.Settings().Update) {
					t.Errorf("%s: %q does not reach Settings().Update:\n%s", key, viaSettings[key], rep.Format("x"))
				}
			case byValue[key] != "":
				_, rep := parse(byValue[key])
				if !named(rep, key, cloudconfig.SeverityWarning) && !named(rep, key, cloudconfig.SeverityError) {
					t.Errorf("%s: %q is not reported by name:\n%s", key, byValue[key], rep.Format("x"))
				}
			default:
				if _, ok := node.EnvForKey(key); !ok {
					t.Errorf("%s is neither applied, nor tagged ignored, nor reported by value", key)
				}
			}
		}
	}
	for key := range viaSettings {
		if !seen[key] {
			t.Errorf("viaSettings names %s, which is no key of these sections", key)
		}
	}
	for key := range byValue {
		if !seen[key] {
			t.Errorf("byValue names %s, which is no key of these sections", key)
		}
	}
}

// sampleValue is a YAML value of kind k; an ignored key is reported
// whatever its value.
func sampleValue(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "1"
	}
	return "x"
}
