package cloudconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkInvariants holds for every input: no panic (the fuzzer catches
// those), every entry has a position and a message, entries are in
// order, and a config without errors keeps validation's promises to the
// apply stage.
func checkInvariants(t *testing.T, data []byte) {
	ud, rep := Parse(data)
	prev := Pos{}
	for _, e := range rep.Entries {
		if e.Line < 1 || e.Message == "" || (e.Severity != SeverityError && e.Severity != SeverityWarning) {
			t.Fatalf("bad entry %+v", e)
		}
		if e.Line < prev.Line || (e.Line == prev.Line && e.Column < prev.Column) {
			t.Fatalf("entries out of order: %+v after %+v", e, prev)
		}
		prev = e.Pos
	}
	if rep.HasErrors() {
		return
	}
	switch ud.Format {
	case FormatCloudConfig:
		c := ud.CloudConfig
		for i, f := range c.WriteFiles {
			if _, err := DecodeContent(f.Content, f.Encoding); err != nil {
				t.Fatalf("valid config, but write_files[%d] does not decode: %v", i, err)
			}
			if !strings.HasPrefix(f.Path, "/") {
				t.Fatalf("valid config with relative path %q", f.Path)
			}
		}
		for _, u := range c.CoreOS.Units {
			if msg, _ := checkUnitName(u.Name); msg != "" {
				t.Fatalf("valid config with bad unit name %q", u.Name)
			}
		}
		for _, u := range c.Users {
			if msg, _ := checkUserName(u.Name); msg != "" {
				t.Fatalf("valid config with bad user name %q", u.Name)
			}
		}
	case FormatIgnition:
		for _, f := range ud.Ignition.Storage.Files {
			if _, err := DecodeIgnitionResource(f.Contents); err != nil {
				t.Fatalf("valid Ignition config, but %s does not decode: %v", f.Path, err)
			}
		}
	case FormatUnknown:
		t.Fatalf("unknown format without an error")
	}
}

func addSeeds(f *testing.F, pattern string) {
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds for %s: %v", pattern, err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzCloudConfig(f *testing.F) {
	addSeeds(f, "testdata/*.yaml")
	addSeeds(f, "testdata/corpus/*.yaml")
	for _, s := range []string{
		"", "#cloud-config\n", "#cloud-config\nhostname: a\n", "#!/bin/sh\n",
		"#cloud-config\ncoreos:\n  units:\n  - name: a@.service\n    command: start\n",
		"#cloud-config\nwrite_files:\n- path: /etc/a\n  encoding: gz+b64\n  content: H4sIAAAAAAAAA8tIzcnJ5wIAIDA6NgYAAAA=\n",
		"#cloud-config\na: &x [1]\nb: *x\n", "#cloud-config\n\tbad: tab\n", "\x1f\x8b\x08",
		"#cloud-config\nusers:\n- name: a\n  sudo: [x, {y: z}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		checkInvariants(t, data)
		// The same text as a cloud-config, whatever its first line.
		checkInvariants(t, append([]byte("#cloud-config\n"), data...))
	})
}

func FuzzIgnition(f *testing.F) {
	addSeeds(f, "testdata/*.json")
	addSeeds(f, "testdata/corpus/*.json")
	for _, s := range []string{
		`{"ignition":{"version":"3.0.0"}}`, `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/a","contents":{"source":"data:,x"}}]}}`,
		`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/a","contents":{"compression":"gzip","source":"data:;base64,H4sI"}}]}}`,
		`{`, `{"ignition":{"version":"9"}}`, `{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"a","sshAuthorizedKeys":["x"]}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		if Detect(data) != FormatIgnition {
			data = append([]byte("{"), data...)
		}
		checkInvariants(t, data)
	})
}

// genConfig builds a cloud-config of about size bytes using every section,
// so the benchmark measures the validator on realistic content.
func genConfig(size int) []byte {
	var b strings.Builder
	b.WriteString("#cloud-config\nhostname: bench.example.com\nmanage_etc_hosts: localhost\n")
	b.WriteString("coreos:\n  etcd2:\n    advertise-client-urls: https://$private_ipv4:2379\n    listen-client-urls: https://0.0.0.0:2379\n")
	b.WriteString("    cert-file: /etc/pith/tls/member.crt\n    key-file: /etc/pith/tls/member.key\n    trusted-ca-file: /etc/pith/tls/ca.crt\n    client-cert-auth: true\n")
	b.WriteString("  update:\n    reboot-strategy: etcd-lock\n  locksmith:\n    window-start: Thu 04:00\n    window-length: 1h\n  units:\n")
	units := size / 4
	for i := 0; b.Len() < units; i++ {
		fmt.Fprintf(&b, "    - name: app-%d.service\n      enable: true\n      command: start\n      content: |\n        [Unit]\n        Description=App %d\n        [Service]\n        ExecStart=/usr/bin/docker run --rm --name app-%d busybox sleep 1d\n        [Install]\n        WantedBy=multi-user.target\n      drop-ins:\n        - name: 10-env.conf\n          content: |\n            [Service]\n            Environment=N=%d\n", i, i, i, i)
	}
	b.WriteString("users:\n")
	for i := 0; b.Len() < size/2; i++ {
		fmt.Fprintf(&b, "  - name: user%d\n    gecos: User %d\n    groups: [docker, wheel]\n    ssh-authorized-keys:\n      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl u%d\n", i, i, i)
	}
	b.WriteString("write_files:\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "  - path: /etc/bench/file-%d.conf\n    permissions: '0644'\n    owner: root:root\n    encoding: b64\n    content: aGVsbG8gd29ybGQsIHRoaXMgaXMgYSBiZW5jaG1hcmsgZmlsZQo=\n", i)
	}
	return []byte(b.String())
}

func TestGeneratedConfigIsValid(t *testing.T) {
	rep := Validate(genConfig(64 << 10))
	if len(rep.Entries) != 0 {
		t.Fatalf("generated config has problems:\n%.2000s", rep.Format("gen"))
	}
}

// BenchmarkValidate measures validation throughput in MB/s on an 8 MiB
// generated cloud-config: go test -run ^$ -bench Validate ./cloudconfig/
func BenchmarkValidate(b *testing.B) {
	data := genConfig(8 << 20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rep := Validate(data); rep.HasErrors() {
			b.Fatal(rep.Format("gen"))
		}
	}
}
