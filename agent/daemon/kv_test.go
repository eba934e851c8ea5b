package daemon

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/agent/cluster"
)

func TestParseInitialCluster(t *testing.T) {
	cases := []struct {
		in   string
		want []cluster.InitialMember
		err  string
	}{
		{"a=http://1.1.1.1:2380", []cluster.InitialMember{{Name: "a", PeerURLs: []string{"http://1.1.1.1:2380"}}}, ""},
		{"b=http://h:1, a=http://h:2,b=http://h:3", []cluster.InitialMember{{Name: "b", PeerURLs: []string{"http://h:1", "http://h:3"}}, {Name: "a", PeerURLs: []string{"http://h:2"}}}, ""},
		{"", nil, "is empty"},
		{"a", nil, "want name=peerURL"},
		{"=http://h:1", nil, "want name=peerURL"},
	}
	for _, tc := range cases {
		got, err := parseInitialCluster(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v %v", tc.in, got, err)
		}
	}
}

// TestReadEnvironment: a setting's variable sets its flag unless the
// command line did.
func TestReadEnvironment(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	name := fs.String("name", "default", "")
	ic := fs.String("initial-cluster", "", "")
	urls := fs.StringSlice("listen-client-urls", nil, "")
	elec := fs.Int("election-timeout", 1000, "")
	if err := fs.Parse([]string{"--name", "fromflag"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ETCD_NAME", "fromenv")
	t.Setenv("ETCD_INITIAL_CLUSTER", "a=http://h:1")
	t.Setenv("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:1,http://127.0.0.1:2")
	t.Setenv("ETCD_ELECTION_TIMEOUT", "2500")
	if err := readEnvironment(fs); err != nil {
		t.Fatal(err)
	}
	if *name != "fromflag" || *ic != "a=http://h:1" || len(*urls) != 2 || *elec != 2500 {
		t.Fatalf("name=%s initial-cluster=%s urls=%v election=%d", *name, *ic, *urls, *elec)
	}
	t.Setenv("ETCD_ELECTION_TIMEOUT", "soon")
	fs2 := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs2.Int("election-timeout", 1000, "")
	if err := readEnvironment(fs2); err == nil || !strings.Contains(err.Error(), "ETCD_ELECTION_TIMEOUT") {
		t.Fatalf("bad env value: %v", err)
	}
}
