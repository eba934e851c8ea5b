package cloudconfig

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"strings"
	"testing"
)

// want is one expected report entry: its position, severity and a part of
// its message.
type want struct {
	line, col int
	sev       Severity
	msg       string
}

func checkReport(t *testing.T, rep *Report, wants []want) {
	t.Helper()
	if len(rep.Entries) != len(wants) {
		t.Errorf("got %d entries, want %d:\n%s", len(rep.Entries), len(wants), rep.Format("in"))
		return
	}
	for i, w := range wants {
		e := rep.Entries[i]
		if e.Line != w.line || e.Column != w.col || e.Severity != w.sev || !strings.Contains(e.Message, w.msg) {
			t.Errorf("entry %d = %d:%d %s %q, want %d:%d %s containing %q", i, e.Line, e.Column, e.Severity, e.Message, w.line, w.col, w.sev, w.msg)
		}
	}
}

const E, W = SeverityError, SeverityWarning

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Format
	}{
		{"", FormatEmpty},
		{"  \n\n", FormatEmpty},
		{"#cloud-config\n", FormatCloudConfig},
		{"#cloud-config\r\nhostname: a\r\n", FormatCloudConfig},
		{"\xef\xbb\xbf#cloud-config\n", FormatCloudConfig},
		{"#cloud-config  \n", FormatCloudConfig},
		{"#!/bin/sh\necho hi\n", FormatScript},
		{"  {\"ignition\":{}}", FormatIgnition},
		{"#cloud-configx\n", FormatUnknown},
		{"hostname: a\n", FormatUnknown},
		{"\x00\x01\x02", FormatUnknown},
	} {
		if got := Detect([]byte(tc.in)); got != tc.want {
			t.Errorf("Detect(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseFull(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ud, rep := Parse(data)
	// Clean but for the one warning that its KV URLs are plain HTTP, as
	// in most CoreOS configs.
	if len(rep.Entries) != 1 || rep.Entries[0].Line != 42 || !strings.Contains(rep.Entries[0].Message, "plain HTTP (and 4 more KV URLs here)") {
		t.Fatalf("full.yaml should be clean but for the plain-HTTP warning:\n%s", rep.Format("full.yaml"))
	}
	c := ud.CloudConfig
	if ud.Format != FormatCloudConfig || c == nil {
		t.Fatalf("format %v", ud.Format)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"hostname", c.Hostname, "node1.example.com"},
		{"manage_etc_hosts", c.ManageEtcHosts, "localhost"},
		{"users", len(c.Users), 2},
		{"primary group (dash key)", c.Users[0].PrimaryGroup, "alice"},
		{"groups", strings.Join(c.Users[0].Groups, ","), "sudo,docker"},
		{"lock_passwd", c.Users[0].LockPasswd != nil && !*c.Users[0].LockPasswd, true},
		{"sudo", strings.Join(c.Users[0].Sudo.Rules, ";"), "ALL=(ALL) NOPASSWD:ALL"},
		{"sudo false", len(c.Users[1].Sudo.Rules), 0},
		{"system", c.Users[1].System && c.Users[1].NoCreateHome && c.Users[1].NoUserGroup && c.Users[1].Inactive && c.Users[1].NoLogInit, true},
		{"unquoted mode stays octal text", c.WriteFiles[1].Permissions, "0755"},
		{"encoding", c.WriteFiles[1].Encoding, "b64"},
		{"etcd2", c.CoreOS.Etcd2.AdvertiseClientURLs, "http://$private_ipv4:2379"},
		{"fleet float", c.CoreOS.Fleet.EngineReconcileInterval, 2.0},
		{"update", c.CoreOS.Update.RebootStrategy, "etcd-lock"},
		{"locksmith", c.CoreOS.Locksmith.WindowStart, "Thu 04:00"},
		{"oem", c.CoreOS.OEM.VersionID, "1.0.0"},
		{"units", len(c.CoreOS.Units), 5},
		{"drop-ins", c.CoreOS.Units[2].DropIns[0].Name, "50-opts.conf"},
		{"runtime", c.CoreOS.Units[3].Runtime, true},
		{"mask", c.CoreOS.Units[4].Mask, true},
		{"pith metadata", c.Pith.Cluster.Metadata["disk"], "ssd"},
		{"pith kv", c.Pith.KV.MaxVoters, 5},
		{"pith schedule", c.Pith.Schedule.Enabled != nil && *c.Pith.Schedule.Enabled, true},
		{"pith update", c.Pith.Update.WindowLength, "2h"},
		{"position kept", c.Pos("coreos.units[1].name"), Pos{Line: 73, Column: 13}},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	for i, f := range c.WriteFiles {
		got, err := DecodeContent(f.Content, f.Encoding)
		if err != nil {
			t.Fatalf("write_files[%d]: %v", i, err)
		}
		want := []string{"Welcome to Pith.\n", "#!/bin/sh\necho hello\n", "hello\n"}[i]
		if string(got) != want {
			t.Errorf("write_files[%d] = %q, want %q", i, got, want)
		}
	}
}

func TestBrokenFileReportsEverything(t *testing.T) {
	data, err := os.ReadFile("testdata/broken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep := Validate(data)
	errs, warns := rep.Count()
	// broken.yaml carries one mistake per line it touches; each must be
	// reported, not only the first.
	if errs != 31 || warns != 4 {
		t.Errorf("got %d errors, %d warnings, want 31 and 4:\n%s", errs, warns, rep.Format("broken.yaml"))
	}
	for _, e := range rep.Entries {
		if e.Line == 0 || e.Column == 0 {
			t.Errorf("entry without position: %+v", e)
		}
	}
}

func TestValidate(t *testing.T) {
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x"
	for _, tc := range []struct {
		name string
		in   string
		want []want
	}{
		{"empty", "", nil},
		{"header only", "#cloud-config\n", nil},
		{"comments only", "#cloud-config\n# nothing\n", nil},
		{"null sections", "#cloud-config\ncoreos:\nusers:\n", nil},
		{"crlf", "#cloud-config\r\nhostname: a\r\n", nil},
		{"script", "#!/bin/bash\necho hi\n", nil},
		{"script without interpreter", "#!\necho hi\n", []want{{1, 3, E, "interpreter"}}},
		{"script relative interpreter", "#! bash\necho hi\n", []want{{1, 3, E, "interpreter"}}},
		{"script env", "#!/usr/bin/env python3\nprint(1)\n", nil},
		{"binary", "\x7fELF\x00\x00", []want{{1, 1, E, "binary"}}},
		{"multipart", "Content-Type: multipart/mixed; boundary=x\n", []want{{1, 1, E, "MIME multipart"}}},
		{"near header", " #cloud-config\nhostname: a\n", []want{{1, 1, E, "exactly"}}},
		{"no header", "hostname: a\n", []want{{1, 1, E, "first line"}}},
		{"trailing space header", "#cloud-config \nhostname: a\n", []want{{1, 14, W, "trailing whitespace"}}},
		{"yaml syntax", "#cloud-config\nhostname: a\n  bad: [\n", []want{{3, 0, E, "YAML syntax error"}}},
		{"tabs everywhere", "#cloud-config\ncoreos:\n\tunits:\n\t\t- name: a.service\n", []want{{3, 1, E, "tab"}, {4, 1, E, "tab"}}},
		{"tab inside block content is fine", "#cloud-config\nwrite_files:\n  - path: /etc/a\n    content: |\n      a\n      \tb\n", nil},
		{"tab after spaces", "#cloud-config\nusers:\n  \t- name: a\n", []want{{3, 3, E, "tab"}}},
		{"not a mapping", "#cloud-config\n- a\n- b\n", []want{{2, 1, E, "must be a YAML mapping"}}},
		{"two documents", "#cloud-config\nhostname: a\n---\nhostname: b\n", []want{{3, 1, W, "only the first YAML document"}}},
		{"leading document marker", "#cloud-config\n---\nhostname: a\n", nil},
		{"duplicate key", "#cloud-config\nhostname: a\nhostname: b\n", []want{{3, 1, E, "duplicate key"}}},
		{"dash and underscore duplicate", "#cloud-config\nwrite_files: []\nwrite-files: []\n", []want{{3, 1, E, "duplicate key"}}},
		{"unknown key suggestion", "#cloud-config\ncoreos:\n  unit: []\n", []want{{3, 3, W, `did you mean "units"`}}},
		{"unknown nested", "#cloud-config\ncoreos:\n  update:\n    channel: beta\n", []want{{4, 5, W, `unknown key "channel"`}}},
		{"wrong type mapping", "#cloud-config\ncoreos: yes\n", []want{{2, 9, E, "want a mapping"}}},
		{"wrong type string", "#cloud-config\nhostname: [a]\n", []want{{2, 11, E, "want a string"}}},
		{"number as string is fine", "#cloud-config\ncoreos:\n  oem:\n    version_id: 1.0\n", nil},
		{"yaml 1.1 bool", "#cloud-config\ncoreos:\n  units:\n  - name: a.service\n    enable: yes\n", nil},
		{"off strategy unquoted", "#cloud-config\ncoreos:\n  update:\n    reboot-strategy: off\n", nil},
		{"int wrong", "#cloud-config\ncoreos:\n  etcd2:\n    snapshot_count: lots\n", []want{{4, 21, E, "whole number"}}},
		{"negative", "#cloud-config\ncoreos:\n  etcd2:\n    max_wals: -1\n", []want{{4, 5, W, "max_wals is accepted for compatibility but ignored"}, {4, 15, E, "negative"}}},
		{"ssh key bad", "#cloud-config\nssh_authorized_keys:\n  - " + key + "\n  - ssh-rsa AAAA\n", []want{{4, 5, E, "not a valid SSH public key"}}},
		{"hostname too long", "#cloud-config\nhostname: " + strings.Repeat("a", 65) + "\n", []want{{2, 11, E, "at most 64"}}},
		{"hostname fqdn", "#cloud-config\nhostname: a-1.b.example\n", nil},
		{"user name digits", "#cloud-config\nusers:\n  - name: 1abc\n", []want{{3, 11, E, "invalid user name"}}},
		{"user name too long", "#cloud-config\nusers:\n  - name: " + strings.Repeat("a", 33) + "\n", []want{{3, 11, E, "invalid user name"}}},
		{"duplicate users", "#cloud-config\nusers:\n  - name: a\n  - name: a\n", []want{{4, 11, E, "already defined"}}},
		{"sudo true", "#cloud-config\nusers:\n  - name: a\n    sudo: true\n", []want{{4, 11, E, "not a sudo rule"}}},
		{"sudo list", "#cloud-config\nusers:\n  - name: a\n    sudo: [\"ALL=(ALL) ALL\", \"ALL=NOPASSWD: /bin/ls\"]\n", nil},
		{"gecos colon", "#cloud-config\nusers:\n  - name: a\n    gecos: 'a:b'\n", []want{{4, 12, E, "':'"}}},
		{"deprecated github", "#cloud-config\nusers:\n  - name: a\n    coreos-ssh-import-github: a\n", []want{{4, 5, W, "deprecated"}}},
		{"mode forms", "#cloud-config\nwrite_files:\n  - path: /etc/a\n    permissions: 644\n  - path: /etc/b\n    permissions: '01777'\n", nil},
		{"mode bad", "#cloud-config\nwrite_files:\n  - path: /etc/a\n    permissions: rw-r--r--\n", []want{{4, 18, E, "octal"}}},
		{"path relative", "#cloud-config\nwrite_files:\n  - path: etc/a\n", []want{{3, 11, E, "absolute"}}},
		{"path dir", "#cloud-config\nwrite_files:\n  - path: /etc/a/\n", []want{{3, 11, E, "directory"}}},
		{"path missing", "#cloud-config\nwrite_files:\n  - content: x\n", []want{{3, 5, E, `missing required key "path"`}}},
		{"owner forms", "#cloud-config\nwrite_files:\n  - path: /etc/a\n    owner: core\n  - path: /etc/b\n    owner: 500:500\n", nil},
		{"owner bad", "#cloud-config\nwrite_files:\n  - path: /etc/a\n    owner: a:b:c\n", []want{{4, 12, E, "invalid owner"}}},
		{"gzip bad", "#cloud-config\nwrite_files:\n  - path: /etc/a\n    encoding: gzip\n    content: nope\n", []want{{5, 14, E, "not valid gzip"}}},
		{"wrapped base64", "#cloud-config\nwrite_files:\n  - path: /etc/a\n    encoding: base64\n    content: |\n      aGVs\n      bG8K\n", nil},
		{"unit names", "#cloud-config\ncoreos:\n  units:\n  - {name: a-b_c:d.e\\x2d.socket, command: start}\n  - {name: getty@tty1.service, command: start}\n  - {name: getty@.service, enable: true}\n  - {name: -.mount, command: start}\n", nil},
		{"unit bad type", "#cloud-config\ncoreos:\n  units:\n  - name: a.serivce\n    command: start\n", []want{{4, 11, E, `unknown unit type "serivce"`}}},
		{"unit bad chars", "#cloud-config\ncoreos:\n  units:\n  - name: a b.service\n    command: start\n", []want{{4, 11, E, "invalid unit name"}}},
		{"unit two at", "#cloud-config\ncoreos:\n  units:\n  - name: a@b@c.service\n    command: start\n", []want{{4, 11, E, "invalid unit name"}}},
		{"unit long", "#cloud-config\ncoreos:\n  units:\n  - name: " + strings.Repeat("a", 250) + ".service\n    command: start\n", []want{{4, 11, E, "at most 255"}}},
		{"empty list item", "#cloud-config\ncoreos:\n  units:\n  -\nusers:\n  - \n", []want{{4, 4, E, `empty item: missing required key "name"`}, {6, 4, E, `empty item: missing required key "name"`}}},
		{"empty required values", "#cloud-config\nusers:\n  - name:\nwrite_files:\n  - path: ''\n", []want{{3, 10, E, "users[0].name must not be empty"}, {5, 11, E, "write_files[0].path must not be empty"}}},
		{"unit no name", "#cloud-config\ncoreos:\n  units:\n  - command: start\n", []want{{4, 5, E, `missing required key "name"`}}},
		{"unit does nothing", "#cloud-config\ncoreos:\n  units:\n  - name: a.service\n", []want{{4, 5, W, "does nothing"}}},
		{"unit mask enable", "#cloud-config\ncoreos:\n  units:\n  - name: a.service\n    mask: true\n    enable: true\n", []want{{6, 13, E, "both masked and enabled"}}},
		{"unit mask stop ok", "#cloud-config\ncoreos:\n  units:\n  - name: a.service\n    mask: true\n    command: stop\n", nil},
		{"drop-in empty", "#cloud-config\ncoreos:\n  units:\n  - name: a.service\n    drop-ins:\n    - name: 10-a.conf\n", []want{{6, 7, W, "no content"}}},
		{"unit content no section", "#cloud-config\ncoreos:\n  units:\n  - name: a.service\n    content: ExecStart=/bin/true\n", []want{{5, 14, W, "no [Section]"}}},
		{"strategies", "#cloud-config\ncoreos:\n  update: {reboot-strategy: best-effort}\n  locksmith: {strategy: reboot, window_start: '22:30', window_length: 90m}\n", nil},
		{"window forms", "#cloud-config\ncoreos:\n  locksmith: {window_start: 'sun 0:00', window_length: 1h30m}\n", nil},
		{"window bad length", "#cloud-config\ncoreos:\n  locksmith: {window_start: 'Mon 01:00', window_length: forever}\n", []want{{3, 57, E, "window length"}}},
		{"window bad day", "#cloud-config\ncoreos:\n  locksmith: {window_start: 'Someday 01:00', window_length: 1h}\n", []want{{3, 29, E, "window start"}}},
		{"etcd2 urls with specifiers", "#cloud-config\ncoreos:\n  etcd2:\n    listen-peer-urls: 'http://%H:2380'\n    initial-cluster: a=http://$private_ipv4:2380,b=https://[$private_ipv6]:2380\n", []want{{4, 23, W, "plain HTTP (and 1 more"}, {5, 22, E, "no certificate is set"}}},
		{"etcd2 bad member", "#cloud-config\ncoreos:\n  etcd2:\n    initial-cluster: a\n", []want{{4, 22, E, "initial_cluster member"}}},
		{"etcd2 bad port", "#cloud-config\ncoreos:\n  etcd2:\n    listen-client-urls: http://0.0.0.0:99999\n", []want{{4, 25, E, "port"}}},
		{"etcd2 discovery and cluster", "#cloud-config\ncoreos:\n  etcd2:\n    discovery: https://d.example/x\n    initial-cluster: a=http://h:2380\n", []want{{4, 16, E, "not both"}, {5, 22, W, "plain HTTP"}}},
		{"etcd2 deprecated", "#cloud-config\ncoreos:\n  etcd2:\n    ca-file: /etc/ca.pem\n", []want{{4, 5, W, "deprecated"}}},
		{"etcd v1", "#cloud-config\ncoreos:\n  etcd:\n    addr: $public_ipv4:4001\n    peers: 'a:7001,b:7001'\n    discovery: nope\n", []want{{5, 5, W, "coreos.etcd.peers is accepted for compatibility but ignored"}, {6, 16, E, "invalid URL"}}},
		{"flannel ignored", "#cloud-config\ncoreos:\n  flannel:\n    interface: eth0\n", []want{{3, 3, W, "ignored"}}},
		{"fleet ipv6", "#cloud-config\ncoreos:\n  fleet: {public-ip: $public_ipv6, agent-ttl: 2x}\n", []want{{3, 47, E, "invalid duration"}}},
		{"pith peers and discovery", "#cloud-config\npith:\n  cluster:\n    discovery: http://d/x\n    peers: [a=http://a:2380]\n", []want{{4, 16, E, "not both"}, {5, 13, W, "plain HTTP"}}},
		{"pith peer without name", "#cloud-config\npith:\n  cluster:\n    peers: [http://a:2380]\n", []want{{4, 13, E, "invalid peer"}}},
		{"pith ports equal", "#cloud-config\npith:\n  kv: {client_port: 2379, peer_port: 2379}\n", []want{{3, 38, E, "must differ"}}},
		{"pith metadata key", "#cloud-config\npith:\n  cluster:\n    metadata: {'bad key': x}\n", []want{{4, 16, E, "metadata key"}}},
		{"pith public key", "#cloud-config\npith:\n  update:\n    public_keys: [AAAA]\n", []want{{4, 19, E, "ed25519"}}},
		{"pith reboot hook with NUL", "#cloud-config\npith:\n  update:\n    pre-reboot: ['kubectl drain $HOSTNAME', \"a\\0b\"]\n", []want{{4, 45, E, "NUL"}}},
		{"cloud-init key", "#cloud-config\npackages: [vim]\n", []want{{2, 1, W, "cloud-init key"}}},
		{"non-string key", "#cloud-config\n[a]: b\n", []want{{2, 1, E, "keys must be plain strings"}}},
		{"anchors and aliases", "#cloud-config\nx-key: &k " + key + "\nssh_authorized_keys: [*k]\n", []want{{2, 1, W, "unknown key"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkReport(t, Validate([]byte(tc.in)), tc.want)
		})
	}
}

func TestAliasBomb(t *testing.T) {
	// Few bytes, but every unit aliases the same long drop-in list, so a
	// naive walk visits units x drop-ins nodes.
	var b strings.Builder
	b.WriteString("#cloud-config\nx-dropins: &d\n")
	for i := 0; i < 2100; i++ {
		b.WriteString("  - {name: a.conf, content: \"[Service]\"}\n")
	}
	b.WriteString("coreos:\n  units:\n")
	for i := 0; i < 2100; i++ {
		b.WriteString("  - {name: a.service, drop_ins: *d}\n")
	}
	rep := Validate([]byte(b.String()))
	if !rep.HasErrors() || !strings.Contains(rep.Format("x"), "alias bomb") {
		t.Fatalf("alias bomb not refused:\n%.2000s", rep.Format("x"))
	}
}

func TestReportIsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("#cloud-config\n")
	for i := 0; i < 3*MaxEntries; i++ {
		fmt.Fprintf(&b, "unknown%d: x\n", i)
	}
	rep := Validate([]byte(b.String()))
	if len(rep.Entries) != MaxEntries+1 || !rep.HasErrors() {
		t.Fatalf("got %d entries, want %d ending in an error", len(rep.Entries), MaxEntries+1)
	}
}

func TestSizeLimit(t *testing.T) {
	big := append([]byte("#cloud-config\n# "), bytes.Repeat([]byte("x"), MaxSize)...)
	rep := Validate(big)
	if !rep.HasErrors() || !strings.Contains(rep.Entries[0].Message, "limit") {
		t.Fatalf("oversize input accepted: %+v", rep.Entries)
	}
	// A gzip bomb: small compressed, over the limit decompressed.
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte("#cloud-config\n# "))
	zw.Write(make([]byte, MaxSize))
	zw.Close()
	rep = Validate(z.Bytes())
	if !rep.HasErrors() || !strings.Contains(rep.Entries[0].Message, "larger than") {
		t.Fatalf("gzip bomb accepted: %+v", rep.Entries)
	}
}

func TestGzipUserData(t *testing.T) {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte("#cloud-config\nhostname: zipped\n"))
	zw.Close()
	ud, rep := Parse(z.Bytes())
	if rep.HasErrors() || ud.CloudConfig == nil || ud.CloudConfig.Hostname != "zipped" {
		t.Fatalf("gzip user-data: %v %s", ud.Format, rep.Format("x"))
	}
}

func TestSubstitute(t *testing.T) {
	in := []byte("#cloud-config\ncoreos:\n  etcd2:\n    advertise-client-urls: http://$public_ipv4:2379\n    listen-peer-urls: http://$private_ipv4:2380,http://[$private_ipv6]:2380\n  fleet:\n    public-ip: $public_ipv6\n")
	out, missing := Substitute(in, Addresses{PrivateIPv4: []byte{10, 0, 2, 15}, PublicIPv4: []byte{203, 0, 113, 7}, PrivateIPv6: mustIP("fd00::5")})
	want := "#cloud-config\ncoreos:\n  etcd2:\n    advertise-client-urls: http://203.0.113.7:2379\n    listen-peer-urls: http://10.0.2.15:2380,http://[fd00::5]:2380\n  fleet:\n    public-ip: $public_ipv6\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	if len(missing) != 1 || missing[0] != "$public_ipv6" {
		t.Errorf("missing = %v", missing)
	}
	cfg, rep := ParseCloudConfig(out)
	if rep.HasErrors() || cfg.CoreOS.Etcd2.AdvertiseClientURLs != "http://203.0.113.7:2379" {
		t.Errorf("substituted config: %s", rep.Format("x"))
	}
}
