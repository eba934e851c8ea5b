package datasource

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/pith-os/pith/cloudconfig"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@laptop"

// imds is a small EC2 instance metadata service: IMDSv2 (token), v1, or
// v2-only, with or without user-data.
type imds struct {
	v2, v1      bool // accept token sessions / token-less GETs
	userData    string
	mu          sync.Mutex
	requests    []string
	tokenlessOK int
}

func (s *imds) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	if r.URL.Path == "/latest/api/token" {
		if !s.v2 {
			http.Error(w, "not here", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "bad token request", http.StatusBadRequest)
			return
		}
		w.Write([]byte("tok-123"))
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	switch tok := r.Header.Get("X-aws-ec2-metadata-token"); {
	case tok == "tok-123" && s.v2:
	case tok == "" && s.v1:
		s.mu.Lock()
		s.tokenlessOK++
		s.mu.Unlock()
	default:
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	files := map[string]string{
		"/latest/meta-data/instance-id":               "i-0abc",
		"/latest/meta-data/local-hostname":            "ip-10-0-0-5.ec2.internal",
		"/latest/meta-data/local-ipv4":                "10.0.0.5",
		"/latest/meta-data/public-ipv4":               "203.0.113.9",
		"/latest/meta-data/public-keys/":              "0=op",
		"/latest/meta-data/public-keys/0/openssh-key": testKey + "\n",
	}
	if s.userData != "" {
		files["/latest/user-data"] = s.userData
	}
	body, ok := files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write([]byte(body))
}

// testConfig keeps every probe on the test's own root and on 127.0.0.1:
// without a server, the metadata URL is a closed loopback port.
func testConfig(t *testing.T, url string) Config {
	if url == "" {
		url = "http://127.0.0.1:1"
	}
	empty := ""
	// A request timeout no busy machine reaches: the tests here are about
	// what is fetched, not how fast (the product's 2 s default expired on
	// TestKernelURL's 1 MiB answer at load 9-14); the timeout tests set
	// their own.
	return Config{Root: t.TempDir(), MetadataURL: url, Cmdline: &empty, ConfigDrives: []string{}, Attempts: 1, RequestTimeout: time.Minute}
}

func TestEC2(t *testing.T) {
	for _, tc := range []struct {
		name      string
		srv       *imds
		wantErr   string
		wantUD    string
		tokenless bool
	}{
		{"imdsv2", &imds{v2: true, userData: "#cloud-config\nhostname: a\n"}, "", "#cloud-config\nhostname: a\n", false},
		{"imdsv1 fallback", &imds{v1: true, userData: "#!/bin/sh\n"}, "", "#!/bin/sh\n", true},
		{"no user-data is not an error", &imds{v2: true}, "", "", false},
		{"token required but not issued", &imds{}, "requires an IMDSv2 token", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(tc.srv)
			defer ts.Close()
			r, err := NewEC2(testConfig(t, ts.URL)).Fetch(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			md := r.Metadata
			if string(r.UserData) != tc.wantUD || md.InstanceID != "i-0abc" || md.PrivateIPv4.String() != "10.0.0.5" ||
				md.PublicIPv4.String() != "203.0.113.9" || md.Hostname != "ip-10-0-0-5.ec2.internal" ||
				len(md.SSHPublicKeys) != 1 || md.SSHPublicKeys[0] != testKey {
				t.Fatalf("got %q %+v", r.UserData, md)
			}
			if got := tc.srv.tokenlessOK > 0; got != tc.tokenless {
				t.Errorf("token-less GETs served: %d, want any=%v", tc.srv.tokenlessOK, tc.tokenless)
			}
		})
	}
}

func TestEC2Unreachable(t *testing.T) {
	// A port nobody listens on: grab one and close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = NewEC2(testConfig(t, "http://"+addr)).Fetch(context.Background())
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	_, err = NewDigitalOcean(testConfig(t, "http://"+addr)).Fetch(context.Background())
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("DO err = %v, want ErrNotFound", err)
	}
}

type doServer struct{ userData string }

func (s doServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/metadata/v1.json":
		w.Write([]byte(`{"droplet_id": 2756294, "hostname": "web-1", "public_keys": ["` + testKey + `"],
		 "interfaces": {"public": [{"ipv4": {"ip_address": "198.51.100.7"}, "ipv6": {"ip_address": "2001:db8::7"}}],
		                "private": [{"ipv4": {"ip_address": "10.132.0.3"}}]}}`))
	case "/metadata/v1/user-data":
		if s.userData == "" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(s.userData))
	default:
		http.NotFound(w, r)
	}
}

func TestDigitalOcean(t *testing.T) {
	for _, ud := range []string{"#cloud-config\nhostname: web-1\n", ""} {
		ts := httptest.NewServer(doServer{ud})
		r, err := NewDigitalOcean(testConfig(t, ts.URL)).Fetch(context.Background())
		ts.Close()
		if err != nil {
			t.Fatal(err)
		}
		md := r.Metadata
		if string(r.UserData) != ud || md.InstanceID != "2756294" || md.PublicIPv4.String() != "198.51.100.7" ||
			md.PublicIPv6.String() != "2001:db8::7" || md.PrivateIPv4.String() != "10.132.0.3" || md.SSHPublicKeys[0] != testKey {
			t.Fatalf("got %q %+v", r.UserData, md)
		}
	}
	// EC2's service is not DigitalOcean's, and the other way round.
	ts := httptest.NewServer(&imds{v2: true})
	defer ts.Close()
	if _, err := NewDigitalOcean(testConfig(t, ts.URL)).Fetch(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Errorf("DO on an EC2 service: %v", err)
	}
	ds := httptest.NewServer(doServer{"x"})
	defer ds.Close()
	if _, err := NewEC2(testConfig(t, ds.URL)).Fetch(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Errorf("EC2 on a DO service: %v", err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFwCfg(t *testing.T) {
	root := t.TempDir()
	f := &FwCfg{Root: root}
	if _, err := f.Fetch(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty root: %v", err)
	}
	writeFile(t, filepath.Join(root, FwCfgDir, "user-data", "raw"), "#cloud-config\nhostname: q\n")
	writeFile(t, filepath.Join(root, FwCfgDir, "meta-data", "raw"), `{"private_ipv4": "10.0.2.15", "hostname": "q"}`)
	r, err := f.Fetch(context.Background())
	if err != nil || string(r.UserData) != "#cloud-config\nhostname: q\n" || r.Metadata.PrivateIPv4.String() != "10.0.2.15" {
		t.Fatalf("got %+v, %v", r, err)
	}
	writeFile(t, filepath.Join(root, FwCfgDir, "meta-data", "raw"), `{not json`)
	if _, err := f.Fetch(context.Background()); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("bad meta-data accepted: %v", err)
	}
}

func TestVagrant(t *testing.T) {
	root := t.TempDir()
	v := &Vagrant{Root: root}
	if _, err := v.Fetch(context.Background()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty root: %v", err)
	}
	writeFile(t, filepath.Join(root, VagrantFile), "#cloud-config\n")
	writeFile(t, filepath.Join(root, filepath.Dir(VagrantFile), "private-ipv4"), "172.17.8.101\n")
	r, err := v.Fetch(context.Background())
	if err != nil || string(r.UserData) != "#cloud-config\n" || r.Metadata.PrivateIPv4.String() != "172.17.8.101" {
		t.Fatalf("got %+v, %v", r, err)
	}
}

// makeConfigDrive builds a config drive image with go-diskfs.
func makeConfigDrive(t *testing.T, typ filesystem.Type, label string, files map[string]string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "drive.img")
	d, err := diskfs.Create(img, 8<<20, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	if typ == filesystem.TypeISO9660 {
		d.LogicalBlocksize = 2048
	}
	fsys, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: typ, VolumeLabel: label, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := fsys.Mkdir("/" + filepath.Dir(name)); err != nil {
			t.Fatal(err)
		}
		f, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if iso, ok := fsys.(*iso9660.FileSystem); ok {
		if err := iso.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: label}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestConfigDrive(t *testing.T) {
	files := map[string]string{
		"openstack/latest/user_data":      "#cloud-config\nhostname: cd\n",
		"openstack/latest/meta_data.json": `{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "cd", "public_keys": {"op": "` + testKey + `"}, "private_ipv4": "10.1.0.4"}`,
	}
	for _, tc := range []struct {
		name string
		typ  filesystem.Type
	}{{"iso9660", filesystem.TypeISO9660}, {"vfat", filesystem.TypeFat32}} {
		t.Run(tc.name, func(t *testing.T) {
			img := makeConfigDrive(t, tc.typ, "config-2", files)
			r, err := (&ConfigDrive{Devices: []string{"/nonexistent/sr9", img}}).Fetch(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			md := r.Metadata
			if string(r.UserData) != files["openstack/latest/user_data"] || md.InstanceID != "83679162-1378-4288-a2d4-70e13ec132aa" ||
				md.Hostname != "cd" || md.PrivateIPv4.String() != "10.1.0.4" || len(md.SSHPublicKeys) != 1 || md.SSHPublicKeys[0] != testKey {
				t.Fatalf("got %q %+v", r.UserData, md)
			}
			// Same filesystem, other label: not a config drive.
			other := makeConfigDrive(t, tc.typ, "data", files)
			if _, err := (&ConfigDrive{Devices: []string{other}}).Fetch(context.Background()); !errors.Is(err, ErrNotFound) {
				t.Fatalf("label data: %v", err)
			}
		})
	}
}

func TestKernelURL(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/node.yaml":
			w.Write([]byte("#cloud-config\nhostname: fromurl\n"))
		case "/huge.yaml":
			w.Write(make([]byte, cloudconfig.MaxSize+1))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	for _, key := range []string{"pith.config.url", "cloud-config-url"} {
		cfg := testConfig(t, "")
		line := "console=ttyS0 " + key + "=" + ts.URL + "/node.yaml quiet"
		cfg.Cmdline = &line
		r, err := Fetch(context.Background(), cfg)
		if err != nil || r.Source != "kernel-url" || string(r.UserData) != "#cloud-config\nhostname: fromurl\n" {
			t.Fatalf("%s: %+v %v", key, r, err)
		}
	}
	cfg := testConfig(t, "")
	line := "pith.config.url=" + ts.URL + "/missing.yaml"
	cfg.Cmdline = &line
	if _, err := Fetch(context.Background(), cfg); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing URL must be an error, got %v", err)
	}
	line = "pith.config.url=" + ts.URL + "/huge.yaml"
	if _, err := Fetch(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("user-data over cloudconfig.MaxSize must be refused, got %v", err)
	}
}

// TestIgnitionURL: ignition.config.url comes before pith.config.url and
// every other source; it is fetched as Ignition fetches it (data: too)
// and must be an Ignition config (or empty); every failure is an
// *IgnitionError, which stops first boot.
func TestIgnitionURL(t *testing.T) {
	const ign = `{"ignition":{"version":"3.4.0"}}`
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/c.ign":
			w.Write([]byte(ign))
		case "/cloud.yaml":
			w.Write([]byte("#cloud-config\nhostname: fromurl\n"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	for _, tc := range []struct {
		name, cmdline string
		want, source  string // want: the user-data, or the error's text when source is ""
	}{
		{name: "http", cmdline: "ignition.config.url=" + ts.URL + "/c.ign", want: ign, source: "ignition-url"},
		{name: "before pith.config.url and fw_cfg", cmdline: "pith.config.url=" + ts.URL + "/cloud.yaml ignition.config.url=" + ts.URL + "/c.ign pith.platform=qemu", want: ign, source: "ignition-url"},
		{name: "data", cmdline: "ignition.config.url=data:;base64,e30=", want: "{}", source: "ignition-url"},
		{name: "empty is no config", cmdline: "ignition.config.url=" + ts.URL + "/empty", want: "", source: "ignition-url"},
		{name: "404", cmdline: "ignition.config.url=" + ts.URL + "/missing.ign", want: "datasource ignition-url: GET " + ts.URL + "/missing.ign: 404 Not Found"},
		{name: "a cloud-config", cmdline: "ignition.config.url=" + ts.URL + "/cloud.yaml", want: "is not an Ignition config (it reads as cloud-config)"},
		{name: "unreachable", cmdline: "ignition.config.url=http://127.0.0.1:1/c.ign", want: "no answer within 300ms"},
		{name: "tftp", cmdline: "ignition.config.url=tftp://10.0.0.1/c.ign", want: "Pith fetches http, https and data: config URLs only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "")
			cfg.Cmdline = &tc.cmdline
			cfg.IgnitionURLWait = 300 * time.Millisecond
			writeFile(t, filepath.Join(cfg.Root, FwCfgDir, "user-data", "raw"), "#cloud-config\nhostname: fw\n")
			r, err := Fetch(context.Background(), cfg)
			if tc.source == "" {
				var ie *IgnitionError
				if !errors.As(err, &ie) || ie.Source != "ignition-url" || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("%+v, %v; want an IgnitionError with %q", r, err, tc.want)
				}
				return
			}
			if err != nil || r.Source != tc.source || string(r.UserData) != tc.want {
				t.Fatalf("%+v, %v; want %q from %s", r, err, tc.want, tc.source)
			}
		})
	}
}

func TestProbeOrder(t *testing.T) {
	ec2 := &imds{v2: true, userData: "#cloud-config\nhostname: ec2\n"}
	ts := httptest.NewServer(ec2)
	defer ts.Close()

	t.Run("platform qemu uses fw_cfg and never the network", func(t *testing.T) {
		cfg := testConfig(t, ts.URL)
		line := "pith.platform=qemu"
		cfg.Cmdline = &line
		writeFile(t, filepath.Join(cfg.Root, FwCfgDir, "user-data", "raw"), "#cloud-config\nhostname: fw\n")
		ec2.requests = nil
		r, err := Fetch(context.Background(), cfg)
		if err != nil || r.Source != "qemu-fw-cfg" {
			t.Fatalf("%+v %v", r, err)
		}
		os.RemoveAll(filepath.Join(cfg.Root, "sys"))
		if _, err := Fetch(context.Background(), cfg); !errors.Is(err, ErrNotFound) {
			t.Fatalf("no fw_cfg on qemu: %v", err)
		}
		if len(ec2.requests) != 0 {
			t.Fatalf("qemu platform contacted the metadata service: %v", ec2.requests)
		}
	})
	t.Run("unknown platform falls through to EC2", func(t *testing.T) {
		cfg := testConfig(t, ts.URL)
		r, err := Fetch(context.Background(), cfg)
		if err != nil || r.Source != "ec2" || string(r.UserData) != ec2.userData {
			t.Fatalf("%+v %v", r, err)
		}
	})
	// The OEM's config.ign (pith install) is the user-data only when no
	// datasource of the machine has one: fw_cfg and a cloud's metadata win.
	t.Run("OEM config.ign last", func(t *testing.T) {
		const ign = `{"ignition":{"version":"3.4.0"}}`
		for _, tc := range []struct {
			name, platform, fwcfg string
			want                  string
		}{
			{"qemu, no fw_cfg user-data", "qemu", "", "oem-ignition"},
			{"qemu, fw_cfg user-data", "qemu", "#cloud-config\nhostname: fw\n", "qemu-fw-cfg"},
			{"unknown platform, EC2 answers", "", "", "ec2"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := testConfig(t, ts.URL)
				line := "pith.platform=" + tc.platform
				cfg.Cmdline = &line
				writeFile(t, filepath.Join(cfg.Root, OEMDir, OEMIgnition), ign)
				if tc.fwcfg != "" {
					writeFile(t, filepath.Join(cfg.Root, FwCfgDir, "user-data", "raw"), tc.fwcfg)
				}
				r, err := Fetch(context.Background(), cfg)
				if err != nil || r.Source != tc.want {
					t.Fatalf("Fetch = %+v, %v; want source %s", r, err, tc.want)
				}
				if tc.want == "oem-ignition" && string(r.UserData) != ign {
					t.Errorf("user-data %q, want the OEM's config.ign", r.UserData)
				}
			})
		}
	})
	t.Run("from-file wins", func(t *testing.T) {
		cfg := testConfig(t, ts.URL)
		cfg.FromFile = filepath.Join(cfg.Root, "ud")
		writeFile(t, cfg.FromFile, "#!/bin/sh\n")
		writeFile(t, filepath.Join(cfg.Root, VagrantFile), "#cloud-config\n")
		r, err := Fetch(context.Background(), cfg)
		if err != nil || r.Source != "file" {
			t.Fatalf("%+v %v", r, err)
		}
		cfg.FromFile = filepath.Join(cfg.Root, "missing")
		if _, err := Fetch(context.Background(), cfg); err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("missing --from-file must be an error: %v", err)
		}
	})
	t.Run("platform order", func(t *testing.T) {
		for platform, want := range map[string][]string{
			"":             {"qemu-fw-cfg", "config-drive", "vagrant", "ec2", "digitalocean", "oem-ignition"},
			"qemu":         {"qemu-fw-cfg", "config-drive", "vagrant", "oem-ignition"},
			"vagrant":      {"vagrant", "qemu-fw-cfg", "config-drive", "oem-ignition"},
			"ec2":          {"ec2", "qemu-fw-cfg", "config-drive", "vagrant", "oem-ignition"},
			"digitalocean": {"digitalocean", "qemu-fw-cfg", "config-drive", "vagrant", "oem-ignition"},
			"openstack":    {"config-drive", "qemu-fw-cfg", "vagrant", "oem-ignition"},
		} {
			cfg := testConfig(t, ts.URL)
			line := "pith.platform=" + platform
			cfg.Cmdline = &line
			var got []string
			for _, s := range Sources(cfg) {
				got = append(got, s.Name())
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("platform %q: order %v, want %v", platform, got, want)
			}
		}
	})
}

// A drive made the way operators make one (mkfs.vfat + mcopy), found
// through udev's by-label link under the configured root.
func TestConfigDriveRealToolsByLabel(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.ConfigDrives = nil // the defaults, under Root
	dev := filepath.Join(cfg.Root, "dev", "sr0")
	if err := os.MkdirAll(filepath.Join(cfg.Root, "dev", "disk", "by-label"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "openstack", "latest", "user_data"), "#cloud-config\nhostname: mtools\n")
	for _, args := range [][]string{
		{"truncate", "-s", "4M", dev},
		{"mkfs.vfat", "-n", "CONFIG-2", dev},
		{"mcopy", "-s", "-i", dev, filepath.Join(src, "openstack"), "::/"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if err := os.Symlink("../../sr0", filepath.Join(cfg.Root, "dev", "disk", "by-label", "CONFIG-2")); err != nil {
		t.Fatal(err)
	}
	r, err := Fetch(context.Background(), cfg)
	if err != nil || r.Source != "config-drive" || string(r.UserData) != "#cloud-config\nhostname: mtools\n" {
		t.Fatalf("%+v %v", r, err)
	}
}
