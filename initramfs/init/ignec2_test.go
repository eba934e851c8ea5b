package pithinit

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// fakeEC2 is EC2's metadata service as pithd's tests know it: IMDSv2
// tokens (v2) or IMDSv1 only, an instance id unless notEC2, user-data
// unless "" (404), udStatus to fail it.
type fakeEC2 struct {
	v2       bool
	notEC2   bool
	userData string
	udStatus int
}

func (f *fakeEC2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const tok = "tok-1"
	if r.URL.Path == "/latest/api/token" {
		if !f.v2 || r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, tok)
		return
	}
	if f.v2 && r.Header.Get("X-aws-ec2-metadata-token") != tok {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	switch {
	case r.URL.Path == "/latest/meta-data/instance-id" && !f.notEC2:
		fmt.Fprint(w, "i-0123\n")
	case r.URL.Path == "/latest/user-data" && f.udStatus != 0:
		http.Error(w, "broken", f.udStatus)
	case r.URL.Path == "/latest/user-data" && f.userData != "":
		fmt.Fprint(w, f.userData)
	default:
		http.NotFound(w, r)
	}
}

// On pith.platform=ec2 the metadata service comes first, read as pithd
// reads it: its user-data wins (none is a config too); a service that is
// not EC2's is absent; one that does not answer within the wait is one
// console line and no config (fw_cfg is not read: pithd may still take
// EC2's); a broken answer stops the boot.
func TestIMDSFirstBoot(t *testing.T) {
	const ign = `{"ignition":{"version":"3.4.0"},"storage":{"disks":[{"device":"/dev/vdb","partitions":[{"label":"d"}]}]}}`
	for _, tc := range []struct {
		name    string
		srv     *fakeEC2 // nil: nothing listens
		data    string
		source  string
		stop    string // StopError text
		console string
		fwCfg   bool // fw_cfg read
	}{
		{name: "IMDSv2 user-data", srv: &fakeEC2{v2: true, userData: ign}, data: ign, source: "EC2 metadata service (instance i-0123)"},
		{name: "IMDSv1 user-data", srv: &fakeEC2{userData: ign}, data: ign, source: "EC2 metadata service (instance i-0123)"},
		{name: "no user-data is EC2's config", srv: &fakeEC2{v2: true}, source: "EC2 metadata service (instance i-0123)"},
		{name: "not EC2's service", srv: &fakeEC2{v2: true, notEC2: true}, data: "fw", source: "fw_cfg", fwCfg: true},
		{name: "user-data HTTP 403", srv: &fakeEC2{v2: true, udStatus: http.StatusForbidden}, stop: "reading the EC2 metadata service\\) failed.*GET /latest/user-data: HTTP 403"},
		{name: "no service", console: "(?s)waiting for the EC2 metadata service at http://127.0.0.1:\\d+ \\(\\ds left\\): metadata service unreachable.*the EC2 metadata service did not answer at http://127.0.0.1:\\d+ within 1s: booting on without"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := ""
			if tc.srv != nil {
				ts := httptest.NewServer(tc.srv)
				defer ts.Close()
				url = ts.URL
			} else {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				url = "http://" + l.Addr().String()
				l.Close() // nothing answers there now
			}
			var console strings.Builder
			printf := func(f string, a ...any) { fmt.Fprintf(&console, f+"\n", a...) }
			fwRead := false
			sources := []firstBootSource{
				{Name: "EC2 metadata service", Pithd: pithdEC2, Read: func() ([]byte, string, error) {
					return imdsUserData(t.Context(), printf, url, time.Second, 200*time.Millisecond)
				}},
				{Name: "fw_cfg", Pithd: pithdFwCfg, Read: func() ([]byte, string, error) { fwRead = true; return []byte("fw"), "", nil }},
			}
			data, src, err := firstBootUserData(sources)
			var stop *StopError
			switch {
			case tc.stop != "":
				if !errors.As(err, &stop) || !matches(tc.stop, err.Error()) {
					t.Fatalf("error %v; want a StopError matching %q", err, tc.stop)
				}
			case err != nil:
				t.Fatal(err)
			case string(data) != tc.data || src.Name != tc.source || fwRead != tc.fwCfg:
				t.Fatalf("data %q from %q (fw_cfg read %v); want %q from %q (%v)", data, src.Name, fwRead, tc.data, tc.source, tc.fwCfg)
			}
			if tc.console != "" && !matches(tc.console, console.String()) {
				t.Errorf("console:\n%s\nwant %q", console.String(), tc.console)
			}
			if tc.srv != nil && src.Name == tc.source && strings.HasPrefix(tc.source, "EC2") && src.Pithd != pithdEC2 {
				t.Errorf("pithd's name %q, want %q (the source marker)", src.Pithd, pithdEC2)
			}
		})
	}
}

// A network source tries every Ethernet device, by index: no loopback,
// bridge or device without a MAC.
func TestEthernetNICs(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	dev := func(name string, idx int, encap string, hw net.HardwareAddr) netlink.Link {
		return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name, Index: idx, EncapType: encap, HardwareAddr: hw}}
	}
	lo := dev("lo", 1, "loopback", net.HardwareAddr{0, 0, 0, 0, 0, 0})
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", Index: 2, EncapType: "ether", HardwareAddr: mac}}
	for _, tc := range []struct {
		name  string
		links []netlink.Link
		want  string
	}{
		{"none", []netlink.Link{lo}, ""},
		{"every one, lowest index first", []netlink.Link{lo, dev("eth1", 4, "ether", mac), dev("eth0", 3, "ether", mac)}, "eth0, eth1"},
		{"not a bridge", []netlink.Link{br, dev("ens5", 7, "ether", mac)}, "ens5"},
		{"not an InfiniBand port", []netlink.Link{dev("ib0", 2, "infiniband", make(net.HardwareAddr, 20)), dev("eth0", 3, "ether", mac)}, "eth0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nicNames(ethernetNICs(tc.links)); got != tc.want {
				t.Errorf("ethernetNICs = %q, want %q", got, tc.want)
			}
		})
	}
}

func matches(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
