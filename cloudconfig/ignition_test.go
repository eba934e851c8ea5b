package cloudconfig

import (
	"os"
	"testing"
)

func TestIgnitionFull(t *testing.T) {
	data, err := os.ReadFile("testdata/ignition-3.4.json")
	if err != nil {
		t.Fatal(err)
	}
	ud, rep := Parse(data)
	if ud.Format != FormatIgnition || len(rep.Entries) != 0 {
		t.Fatalf("format %v, report:\n%s", ud.Format, rep.Format("x"))
	}
	c := ud.Ignition
	if len(c.Passwd.Users) != 1 || c.Passwd.Users[0].Name != "alice" || len(c.Storage.Files) != 2 || len(c.Systemd.Units) != 2 {
		t.Fatalf("unexpected config %+v", c)
	}
	for i, want := range []string{"node3\n", "Welcome to Pith.\n"} {
		got, err := DecodeIgnitionResource(c.Storage.Files[i].Contents)
		if err != nil || string(got) != want {
			t.Errorf("file %d = %q, %v; want %q", i, got, err, want)
		}
	}
}

func TestIgnitionVersions(t *testing.T) {
	for _, v := range []string{"3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"} {
		in := `{"ignition":{"version":"` + v + `"},"systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}]}}`
		ud, rep := Parse([]byte(in))
		if rep.HasErrors() || ud.Ignition == nil || ud.Ignition.Systemd.Units[0].Name != "a.service" {
			t.Errorf("spec %s: %s", v, rep.Format("x"))
		}
	}
}

func TestIgnitionErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []want
	}{
		{"json syntax", "{\"ignition\":{\"version\":\"3.4.0\"},\n \"storage\": {\"files\": [}\n", []want{{2, 24, E, "invalid character"}}},
		{"spec 2", `{"ignition":{"version":"2.2.0"}}`, []want{{1, 1, E, "unsupported Ignition config version"}}},
		{"no version", `{"storage":{}}`, []want{{1, 1, E, "ignition.version is missing"}}},
		{"experimental", `{"ignition":{"version":"3.6.0-experimental"}}`, []want{{1, 1, E, "unsupported"}}},
		{"every problem at once", "{\"ignition\":{\"version\":\"3.4.0\"},\n \"storage\":{\"files\":[{\"path\":\"relative\",\"contents\":{\"source\":\"http://x/y\"}}],\n \"disks\":[{\"device\":\"/dev/sdb\"}]},\n \"systemd\":{\"units\":[{\"name\":\"bad\"}]}}\n",
			[]want{{2, 30, E, "path not absolute"}, {2, 62, W, "plain HTTP"}, {4, 30, E, "invalid systemd unit extension"}}},
		{"usr is read-only", `{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/usr/bin/x"}]}}`, []want{{1, 61, E, "read-only /usr"}}},
		{"bad ssh key", `{"ignition":{"version":"3.0.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["x"]}]}}`, []want{{1, 88, E, "not a valid SSH public key"}}},
		{"kernel args", `{"ignition":{"version":"3.3.0"},"kernelArguments":{"shouldExist":["quiet"],"shouldNotExist":["init=/bin/sh"]}}`, []want{{1, 94, E, "kernelArguments.shouldNotExist.0: kernel argument \"init=/bin/sh\""}}},
		{"plain http merge", `{"ignition":{"version":"3.4.0","config":{"merge":[{"source":"http://10.0.2.2/x.ign"}]}}}`, []want{{1, 61, W, "plain HTTP at first boot: anyone on the path can change it; use https or give verification.hash"}}},
		{"https replace", `{"ignition":{"version":"3.4.0","config":{"replace":{"source":"https://10.0.2.2/x.ign"}}}}`, nil},
		{"tftp source", `{"ignition":{"version":"3.4.0","config":{"replace":{"source":"tftp://10.0.2.2/x.ign"}}}}`, []want{{1, 62, E, `not "tftp://10.0.2.2/x.ign"`}}},
		{"replace beside storage", `{"ignition":{"version":"3.4.0","config":{"replace":{"source":"https://10.0.2.2/x.ign"}}},"storage":{"filesystems":[{"device":"/dev/disk/by-id/virtio-x","format":"ext4","path":"/var/d"}]}}`,
			[]want{{1, 62, E, "ignition.config.replace discards this whole config, storage too"}}},
		{"replace beside disks", `{"ignition":{"version":"3.4.0","config":{"replace":{"source":"https://10.0.2.2/x.ign"}}},"storage":{"disks":[{"device":"/dev/disk/by-id/virtio-x","wipeTable":true}]}}`,
			[]want{{1, 62, E, "use ignition.config.merge instead of replace"}}},
		{"replace beside a filesystem without format", `{"ignition":{"version":"3.4.0","config":{"replace":{"source":"https://10.0.2.2/x.ign"}}},"storage":{"filesystems":[{"device":"/dev/disk/by-id/virtio-x"}]}}`, nil},
		{"merge beside storage", `{"ignition":{"version":"3.4.0","config":{"merge":[{"source":"https://10.0.2.2/x.ign"}]}},"storage":{"filesystems":[{"device":"/dev/disk/by-id/virtio-x","format":"ext4","path":"/var/d"}]}}`, nil},
		{"CA not PEM", `{"ignition":{"version":"3.4.0","security":{"tls":{"certificateAuthorities":[{"source":"data:,nope"}]}}}}`, []want{{1, 87, E, "no PEM certificate"}}},
		{"bad data url", `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/a","contents":{"source":"data:;base64,@@@"}}]}}`, []want{{1, 91, E, "invalid data character"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkReport(t, Validate([]byte(tc.in)), tc.want)
		})
	}
}

func TestIgnitionGzipContents(t *testing.T) {
	// "hello\n" gzip-compressed, as Butane emits for larger files.
	in := `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/a","contents":{"compression":"gzip","source":"data:;base64,H4sIAAAAAAAAA8tIzcnJ5wIAIDA6NgYAAAA="}}]}}`
	ud, rep := Parse([]byte(in))
	if rep.HasErrors() {
		t.Fatal(rep.Format("x"))
	}
	got, err := DecodeIgnitionResource(ud.Ignition.Storage.Files[0].Contents)
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("got %q, %v", got, err)
	}
}
