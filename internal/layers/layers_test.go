package layers

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/pith-os/pith/"

// imports returns each package of the module with the module's packages it
// imports (without the module prefix).
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		p := strings.TrimPrefix(f[0], mod)
		pkgs[p] = nil
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, mod) {
				pkgs[p] = append(pkgs[p], strings.TrimPrefix(imp, mod))
			}
		}
	}
	return pkgs
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// TestLayers: the rules README's repository map states.
func TestLayers(t *testing.T) {
	pkgs := imports(t)
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages: %v", len(pkgs), pkgs)
	}
	rules := []struct {
		name   string
		from   func(string) bool
		banned func(string) bool
	}{
		{"nothing imports cmd/", func(string) bool { return true }, func(i string) bool { return under(i, "cmd") }},
		{"cloudconfig imports nothing from agent/", func(p string) bool { return under(p, "cloudconfig") }, func(i string) bool { return under(i, "agent") }},
		{"the node's pieces never import the workstation's", func(p string) bool { return under(p, "agent") || under(p, "cloudconfig") || under(p, "initramfs") },
			func(i string) bool {
				return under(i, "vm") || under(i, "image/build") || under(i, "image/rootfs") || under(i, "e2e") || i == "discovery"
			}},
		{"fleetv1 imports only unitfile", func(p string) bool { return p == "fleetv1" }, func(i string) bool { return i != "unitfile" }},
		{"node, pki, atomicfile, version, unitfile, cloudconfig and agent/kv import nothing of Pith's", func(p string) bool {
			return p == "node" || p == "pki" || p == "atomicfile" || p == "version" || p == "unitfile" || p == "cloudconfig" || p == "agent/kv"
		}, func(string) bool { return true }},
		{"discovery imports only agent/kv, pki and atomicfile", func(p string) bool { return p == "discovery" }, func(i string) bool { return i != "agent/kv" && i != "pki" && i != "atomicfile" }},
		{"agent/schedule imports only agent/schedule/..., unitfile and fleetv1", func(p string) bool { return under(p, "agent/schedule") }, func(i string) bool { return !under(i, "agent/schedule") && i != "unitfile" && i != "fleetv1" }},
		// Issue 21: pith discovery serve runs package discovery, pithctl
		// userdata apply execs pithd firstboot --now.
		{"the CLIs take shared types from node and pki, nothing from agent/", func(p string) bool { return p == "cmd/pith" || p == "cmd/pithctl" },
			func(i string) bool { return under(i, "agent") }},
		{"fwcfg imports nothing of Pith's", func(p string) bool { return p == "fwcfg" }, func(string) bool { return true }},
		{"configdrive imports nothing of Pith's", func(p string) bool { return p == "configdrive" }, func(string) bool { return true }},
		{"imds imports nothing of Pith's", func(p string) bool { return p == "imds" }, func(string) bool { return true }},
		{"configurl imports only cloudconfig", func(p string) bool { return p == "configurl" }, func(i string) bool { return i != "cloudconfig" }},
		{"linelog imports nothing of Pith's", func(p string) bool { return p == "linelog" }, func(string) bool { return true }},
		{"cloudconfig/apply imports only cloudconfig, node/... and atomicfile", func(p string) bool { return p == "cloudconfig/apply" },
			func(i string) bool { return i != "cloudconfig" && !under(i, "node") && i != "atomicfile" }},
		{"initramfs/... imports only initramfs/..., cloudconfig, node, fwcfg, configdrive, imds, configurl, linelog and atomicfile (the init stays small: no agent/)", func(p string) bool { return under(p, "initramfs") },
			func(i string) bool {
				return !under(i, "initramfs") && i != "cloudconfig" && i != "node" && i != "fwcfg" && i != "configdrive" && i != "imds" && i != "configurl" && i != "linelog" && i != "atomicfile"
			}},
	}
	for _, r := range rules {
		for p, imps := range pkgs {
			if !r.from(p) {
				continue
			}
			for _, i := range imps {
				if r.banned(i) {
					t.Errorf("%s: %s imports %s", r.name, p, i)
				}
			}
		}
	}
}

// TestPackageComments: every package of the module says what it is for.
func TestPackageComments(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}	{{.Doc}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 20 {
		t.Fatalf("go list found %d packages", len(lines))
	}
	for _, l := range lines {
		if p, doc, _ := strings.Cut(l, "\t"); strings.TrimSpace(doc) == "" {
			t.Errorf("%s has no package comment: put one in doc.go or the package's main file", p)
		}
	}
}
