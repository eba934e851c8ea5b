package daemon

import (
	"slices"
	"testing"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/node"
)

// TestFlagsMatchTable: `pithd run` has exactly the flags of node's
// settings table, and each variable of the table reaches its flag (the
// cloud-config writer's side is cloudconfig/apply's TestAgentEnvMatchesTable).
func TestFlagsMatchTable(t *testing.T) {
	var cfg Config
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	cfg.AddFlags(fs)
	table := map[string]node.Setting{}
	envs := map[string]bool{}
	for _, s := range node.Settings() {
		if _, dup := table[s.Flag]; dup {
			t.Errorf("flag %s is in the table twice", s.Flag)
		}
		table[s.Flag] = s
		if s.Env != "" {
			if envs[s.Env] {
				t.Errorf("variable %s is in the table twice", s.Env)
			}
			envs[s.Env] = true
		}
		if fs.Lookup(s.Flag) == nil {
			t.Errorf("the table's flag --%s is not a flag of pithd run", s.Flag)
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if _, ok := table[f.Name]; !ok {
			t.Errorf("flag --%s of pithd run is not in node's settings table", f.Name)
		}
	})

	// Every variable sets its flag, with a value of the flag's type.
	for _, s := range node.Settings() {
		f := fs.Lookup(s.Flag)
		if s.Env == "" || f == nil {
			continue
		}
		t.Run(s.Env, func(t *testing.T) {
			var cfg Config
			fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
			cfg.AddFlags(fs)
			val := map[string]string{"bool": "true", "int": "7", "int64": "7", "uint64": "7", "duration": "7s", "stringSlice": "http://127.0.0.1:7"}[f.Value.Type()]
			if val == "" {
				val = "x7"
			}
			t.Setenv(s.Env, val)
			if err := readEnvironment(fs); err != nil {
				t.Fatal(err)
			}
			got := fs.Lookup(s.Flag)
			if !got.Changed || !slices.Contains([]string{val, "[" + val + "]"}, got.Value.String()) {
				t.Errorf("%s=%s: --%s = %s", s.Env, val, s.Flag, got.Value.String())
			}
		})
	}
}

// TestLoadFleetEnvironment: fleet's variables reach the scheduler's
// config, and the command line still wins.
func TestLoadFleetEnvironment(t *testing.T) {
	var cfg Config
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse([]string{"--public-ip", "10.0.0.1", "--update-settings", "", "--update-conf", "/nonexistent"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLEET_METADATA", "role=web")
	t.Setenv("FLEET_PUBLIC_IP", "10.0.0.2")
	t.Setenv("FLEET_AGENT_TTL", "9s")
	if err := cfg.Load(fs); err != nil {
		t.Fatal(err)
	}
	s := cfg.Schedule
	if s.Metadata != "role=web" || s.PublicIP != "10.0.0.1" || s.AgentTTL.String() != "9s" {
		t.Errorf("schedule config %+v", s)
	}
}
