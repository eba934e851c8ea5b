package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, s string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateFiles(t *testing.T) {
	dir := t.TempDir()
	good := write(t, dir, "good.yaml", "#cloud-config\nhostname: a\n")
	warn := write(t, dir, "warn.yaml", "#cloud-config\nhostnme: a\n")
	bad := write(t, dir, "bad.yaml", "#cloud-config\nhostname: -a\ncoreos:\n  units:\n  - name: x\n")
	ign := write(t, dir, "bad.ign", "{\"ignition\":{\"version\":\"3.4.0\"},\n\"storage\":{\"files\":[{\"path\":\"rel\"}]}}")
	kargs := write(t, dir, "kargs.ign", "{\"ignition\":{\"version\":\"3.4.0\"},\n\"kernelArguments\":{\"shouldExist\":[\"quiet\",\n \"mitigations=off\"]}}")

	for _, tc := range []struct {
		name       string
		files      []string
		secureBoot bool
		wantErr    bool
		want       []string
	}{
		{"valid", []string{good}, false, false, nil},
		{"warnings only pass", []string{good, warn}, false, false, []string{warn + ":2:1: warning: unknown key \"hostnme\""}},
		{"errors fail, all files reported", []string{bad, warn, ign}, false, true, []string{
			bad + ":2:11: error: hostname: invalid hostname",
			bad + ":5:5: warning: x has no content",
			bad + ":5:11: error: coreos.units[0].name: invalid unit name",
			warn + ":2:1: warning:",
			ign + ":2:29: error: Ignition: storage.files.0.path: path not absolute",
		}},
		{"kernel arguments", []string{kargs}, false, false, nil},
		{"kernel arguments for Secure Boot", []string{kargs, good}, true, true, []string{
			kargs + ":3:2: error: ignition config: kernelArguments.shouldExist.1: kernel argument \"mitigations=off\" is not on the Secure Boot allowlist",
		}},
		{"empty file", []string{write(t, dir, "empty", "\n")}, false, true, []string{filepath.Join(dir, "empty") + ":1:1: error: the file is empty"}},
		{"missing file", []string{filepath.Join(dir, "nope")}, false, true, []string{filepath.Join(dir, "nope") + ": error: open "}},
		{"directory", []string{dir}, false, true, []string{dir + ": error: " + dir + " is a directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := ValidateFiles(&out, nil, tc.files, Options{Format: "text", SecureBoot: tc.secureBoot})
			if tc.wantErr != errors.Is(err, ErrInvalid) || (!tc.wantErr && err != nil) {
				t.Fatalf("err = %v, want invalid=%v", err, tc.wantErr)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(tc.want) == 0 && out.Len() != 0 {
				t.Fatalf("unexpected output %q", out.String())
			}
			if len(tc.want) > 0 && len(lines) != len(tc.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(tc.want), out.String())
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestValidateJSONAndStdin(t *testing.T) {
	var out bytes.Buffer
	err := ValidateFiles(&out, strings.NewReader("#cloud-config\ncoreos:\n  update:\n    reboot-strategy: sometimes\n"), []string{"-"}, Options{Format: "json"})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	var res struct {
		Valid bool
		Files []FileResult
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	f := res.Files[0]
	if res.Valid || f.File != "-" || f.Format.String() != "cloud-config" || f.Errors != 1 || f.Entries[0].Line != 4 || f.Entries[0].Column != 22 ||
		f.Entries[0].Path != "coreos.update.reboot_strategy" {
		t.Errorf("json result %+v", res)
	}
	if err := ValidateFiles(&out, nil, []string{"x"}, Options{Format: "xml"}); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("bad --format: %v", err)
	}
}
