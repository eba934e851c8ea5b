package vagrant

// The Vagrantfile's own logic (user-data generation for N nodes) run by
// Ruby with a stand-in for Vagrant's configure block, and its output
// checked with the parser pithd uses; the box's Vagrantfile and the
// repository's are checked for Ruby syntax.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/vagrant/box"
)

func needRuby(t *testing.T) string {
	t.Helper()
	r, err := exec.LookPath("ruby")
	if err != nil {
		// make test installs it (deps-vagrant): in CI a missing Ruby fails.
		if os.Getenv("CI") == "true" {
			t.Fatal("ruby is not installed: make deps-vagrant installs Vagrant and Ruby")
		}
		t.Skip("ruby is not installed: make deps-vagrant installs Vagrant and Ruby")
	}
	return r
}

// loadVagrantfile evaluates Vagrantfile in dir as `vagrant ARGS` would,
// without Vagrant: only the top-level Ruby runs.
const loadVagrantfile = `
module Vagrant
  def self.require_version(*); end
  def self.configure(*); end
end
load ARGV.shift
`

func TestVagrantfileUserData(t *testing.T) {
	ruby := needRuby(t)
	src, err := os.ReadFile("Vagrantfile")
	if err != nil {
		t.Fatal(err)
	}
	sample, err := os.ReadFile("user-data.sample")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		config string
		nodes  int
		want   []string // in every node's user-data
	}{
		{"one node", "", 1, []string{"peers: [core-01=http://172.17.8.101:2380]", "channel: stable"}},
		{"three nodes", "$num_instances = 3\n$update_channel = \"beta\"\n", 3,
			[]string{"peers: [core-01=http://172.17.8.101:2380, core-02=http://172.17.8.102:2380, core-03=http://172.17.8.103:2380]", "channel: beta"}},
		{"prefix", "$num_instances = 2\n$instance_name_prefix = \"pith\"\n", 2, []string{"pith-02=http://172.17.8.102:2380"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range map[string][]byte{"Vagrantfile": src, "user-data": sample, "config.rb": []byte(tc.config)} {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(ruby, "-e", loadVagrantfile, "--", filepath.Join(dir, "Vagrantfile"), "up")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ruby: %v\n%s", err, out)
			}
			for i := 1; i <= tc.nodes; i++ {
				name := fmt.Sprintf("%s-%02d", prefixFor(tc.config), i)
				b, err := os.ReadFile(filepath.Join(dir, ".vagrant", "pith-user-data-"+name))
				if err != nil {
					t.Fatal(err)
				}
				text := string(b)
				for _, w := range append(tc.want, "node-name: "+name) {
					if !strings.Contains(text, w) {
						t.Errorf("%s: user-data lacks %q:\n%s", name, w, text)
					}
				}
				for _, line := range strings.Split(text, "\n") {
					if !strings.HasPrefix(strings.TrimSpace(line), "#") && strings.Contains(line, "<") {
						t.Errorf("%s: a placeholder is left: %q", name, line)
					}
				}
				// What the node would parse, with its address substituted.
				data, _ := cloudconfig.Substitute(b, cloudconfig.Addresses{})
				if _, rep := cloudconfig.Parse(data); rep.HasErrors() {
					t.Errorf("%s: user-data invalid:\n%s", name, rep.Format(name))
				}
			}
			if _, err := os.Stat(filepath.Join(dir, ".vagrant", fmt.Sprintf("pith-user-data-%s-%02d", prefixFor(tc.config), tc.nodes+1))); err == nil {
				t.Errorf("user-data generated for more than %d nodes", tc.nodes)
			}
		})
	}
}

func prefixFor(config string) string {
	if strings.Contains(config, `"pith"`) {
		return "pith"
	}
	return "core"
}

func TestRubySyntax(t *testing.T) {
	ruby := needRuby(t)
	dir := t.TempDir()
	files := map[string]string{"box": box.Vagrantfile()}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"Vagrantfile", "config.rb.sample", filepath.Join(dir, "box")} {
		if out, err := exec.Command(ruby, "-c", p).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", p, err, out)
		}
	}
}
