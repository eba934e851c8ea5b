package walkthrough

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/pki"
	"github.com/pith-os/pith/unitfile"
)

// issued is what `pith cluster issue` prints for node1 of a new cluster.
func issued(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Init(dir, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.IssueMember(dir, "node1", []net.IP{net.ParseIP(privateIP(0))}); err != nil {
		t.Fatal(err)
	}
	cc, err := pki.NodeCloudConfig(dir, "node1")
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// The user-data is what a CoreOS user would write, over TLS with the
// node's member part from pith cluster issue: it must pass Pith's own
// validator with no warning at all (no plain-HTTP KV URL), turn mutual
// TLS on, and say what the walkthrough relies on.
func TestUserDataValidates(t *testing.T) {
	m, err := ParseIssued(issued(t))
	if err != nil {
		t.Fatal(err)
	}
	ud := UserData(GuestDiscoveryURL+"/0123abcd", 3, m)
	if rep := cloudconfig.Validate([]byte(ud)); len(rep.Entries) != 0 {
		t.Fatalf("user-data has problems:\n%s\n%s", rep.Format("user-data"), ud)
	}
	c, rep := cloudconfig.ParseCloudConfig([]byte(ud))
	if rep.HasErrors() || c == nil {
		t.Fatal(rep.Format("user-data"))
	}
	tls := cloudconfig.EffectiveKVTLS(c)
	if tls.CertFile != pki.NodeCert || tls.KeyFile != pki.NodeCertKey || tls.TrustedCAFile != pki.NodeCA || !tls.ClientCertAuth {
		t.Errorf("KV TLS %+v, want the member certificate, its key and the cluster CA with client certificates required", tls)
	}
	files := map[string]string{}
	for _, f := range c.WriteFiles {
		files[f.Path] = f.Permissions
	}
	if files[pki.NodeCertKey] != "0600" || files[pki.NodeCert] == "" || files[pki.NodeCA] == "" {
		t.Errorf("write_files %v: want the CA, the member certificate and its key (0600)", files)
	}
	for _, want := range []string{
		"discovery: " + GuestDiscoveryURL + "/0123abcd",
		"advertise-client-urls: https://$private_ipv4:2379",
		"initial-advertise-peer-urls: https://$private_ipv4:2380",
		"server: " + GuestChannelURL,
		"group: stable",
		"reboot-strategy: etcd-lock",
		"MACAddress=52:54:00:77:00:01 52:54:00:77:00:02 52:54:00:77:00:03",
	} {
		if !strings.Contains(ud, want) {
			t.Errorf("user-data lacks %q", want)
		}
	}
	// Shown without the PEM bodies: no base64 line of the key is left.
	shown := elidePEM(ud)
	_, key, _ := strings.Cut(m.Files, "-----BEGIN PRIVATE KEY-----\n")
	key, _, _ = strings.Cut(key, "-----END")
	for _, l := range strings.Fields(key) {
		if strings.Contains(shown, l) {
			t.Errorf("elidePEM left the key line %q", l)
		}
	}
	if key == "" || !strings.Contains(shown, "-----BEGIN PRIVATE KEY-----\n      ...\n      -----END PRIVATE KEY-----") {
		t.Errorf("elidePEM cut the markers:\n%s", shown)
	}
}

// The plain-HTTP user-data a CoreOS user wrote before TLS keeps working:
// it validates with the plain-HTTP warning only.
func TestPlainUserDataWarns(t *testing.T) {
	ud := strings.ReplaceAll(UserData(GuestDiscoveryURL+"/0123abcd", 3, Member{}), "https://", "http://")
	rep := cloudconfig.Validate([]byte(ud))
	if rep.HasErrors() || len(rep.Entries) != 1 || !strings.Contains(rep.Entries[0].Message, "is plain HTTP") {
		t.Fatalf("plain-HTTP user-data: want exactly the plain-HTTP warning:\n%s", rep.Format("user-data"))
	}
}

func TestParseIssuedRefusesOther(t *testing.T) {
	for _, cc := range []string{"", "#cloud-config\n", "#cloud-config\nwrite_files:\n  - path: /x\n", "#cloud-config\npith:\n  kv: {}\n"} {
		if _, err := ParseIssued(cc); err == nil {
			t.Errorf("ParseIssued(%q): no error", cc)
		}
	}
}

// The units parse as the scheduler parses them, with the [X-Fleet] options
// the walkthrough explains.
func TestUnits(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		conflicts  []string
		global     bool
	}{
		{"mongo@.service", MongoUnit, []string{"mongo@*.service"}, false},
		{"announce.service", AnnounceUnit, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := unitfile.ParseUnitFile([]byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			r, err := unitfile.ParseRequirements(tc.name, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Conflicts, tc.conflicts) || r.Global != tc.global {
				t.Errorf("conflicts %v global %v, want %v %v", r.Conflicts, r.Global, tc.conflicts, tc.global)
			}
		})
	}
}

func TestParseUnits(t *testing.T) {
	out := "mongo@1.service\t0123abcd/10.77.0.12\tactive\n" +
		"mongo@2.service\tfeed/10.77.0.11\tactivating\n" +
		"announce.service\tbeef/10.77.0.99\tactive\n" +
		"orphan.service\t-\n\n"
	got := parseUnits(out, 3)
	want := []UnitRow{
		{Unit: "mongo@1.service", Machine: "0123abcd", IP: "10.77.0.12", Active: "active", Node: 1},
		{Unit: "mongo@2.service", Machine: "feed", IP: "10.77.0.11", Active: "activating", Node: 0},
		{Unit: "announce.service", Machine: "beef", IP: "10.77.0.99", Active: "active", Node: -1},
		{Unit: "orphan.service", Machine: "-", Node: -1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseUnits:\n got %+v\nwant %+v", got, want)
	}
}

func TestNextVersion(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"0.1.0", "0.1.1", ""},
		{"1.9.19", "1.9.20", ""},
		{"0.1", "", "not MAJOR.MINOR.PATCH"},
		{"0.1.x", "", "not a number"},
		{"0.1.-1", "", "not a number"},
	} {
		got, err := nextVersion(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("nextVersion(%q) = %q, %v; want %q, error containing %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// The next release's build config is a valid config that keeps the base
// image's inputs and changes only the version.
func TestBuildConfig(t *testing.T) {
	m := &manifest.Manifest{Version: "0.1.0", Platform: "qemu", Inputs: manifest.Inputs{
		Suite: "bookworm", Mirror: "http://deb.debian.org/debian", Packages: []string{"htop", "jq"},
		KernelPackage: "linux-image-cloud-amd64", DiskSize: 4 << 30, SourceDateEpoch: 1767225600,
	}}
	c, err := config.Parse([]byte(buildConfig(m, "0.1.1")), "pith.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != "0.1.1" || c.Suite != "bookworm" || !slices.Equal(c.Packages, []string{"htop", "jq"}) || c.DiskSize != 4<<30 || c.Epoch != 1767225600 || c.Platform != "qemu" {
		t.Errorf("config %+v", c)
	}
}

func TestContainerTarGz(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hello")
	body := []byte("\x7fELF not really")
	if err := os.WriteFile(bin, body, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := ContainerTarGz(bin)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(tr)
	if h.Name != "hello" || h.Mode != 0o755 || !bytes.Equal(got, body) {
		t.Errorf("entry %s mode %o content %q", h.Name, h.Mode, got)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("more than one entry: %v", err)
	}
	if _, err := ContainerTarGz(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "pith-hello") {
		t.Errorf("missing binary: %v, want an error naming pith-hello", err)
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	relay := func(g, h string) string { return "" }
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"two nodes", Config{Nodes: 2, Relay: relay}, "at least 3"},
		{"no relay", Config{}, "Relay is required"},
		{"no image", Config{Relay: relay, ImageDir: dir, BinDir: dir, ReleaseKey: filepath.Join(dir, "k"), StateDir: dir}, "make image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
