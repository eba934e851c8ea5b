package walkthrough

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/manifest"
)

// The user-data is what a CoreOS user would write: it must pass Pith's own
// validator with no warning but the one that its KV URLs are plain HTTP
// (until the walkthrough runs the cluster over TLS), and say what the
// walkthrough relies on.
func TestUserDataValidates(t *testing.T) {
	ud := UserData(GuestDiscoveryURL+"/0123abcd", 3)
	rep := cloudconfig.Validate([]byte(ud))
	for _, e := range rep.Entries {
		if e.Severity != cloudconfig.SeverityWarning || !strings.Contains(e.Message, "is plain HTTP") {
			t.Fatalf("user-data has problems:\n%s\n%s", rep.Format("user-data"), ud)
		}
	}
	c, rep := cloudconfig.ParseCloudConfig([]byte(ud))
	if rep.HasErrors() {
		t.Fatal(rep.Format("user-data"))
	}
	for _, want := range []string{
		"discovery: " + GuestDiscoveryURL + "/0123abcd",
		"advertise-client-urls: http://$private_ipv4:2379",
		"server: " + GuestChannelURL,
		"group: stable",
		"reboot-strategy: etcd-lock",
		"MACAddress=52:54:00:77:00:01 52:54:00:77:00:02 52:54:00:77:00:03",
	} {
		if !strings.Contains(ud, want) {
			t.Errorf("user-data lacks %q", want)
		}
	}
	if c == nil {
		t.Fatal("no config parsed")
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
			opts, err := schedule.ParseUnitFile([]byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			r, err := schedule.ParseRequirements(tc.name, opts)
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
