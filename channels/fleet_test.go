package channels

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/pki"
)

type testMachine struct {
	id    string
	group string
	key   ed25519.PrivateKey
	seq   uint64
}

func newTestMachine(id string) *testMachine {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	return &testMachine{id: id, key: k}
}

func (m *testMachine) report(t testing.TB, event, running, version, reason string) []byte {
	m.seq++
	b, err := SignReport(Report{Machine: m.id, Group: cmp.Or(m.group, "default"), Channel: "stable", Arch: "linux/amd64", Running: running,
		Version: version, Event: event, Reason: reason, Time: time.Now(), Seq: m.seq}, m.key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReportAuthentication(t *testing.T) {
	f, err := OpenFleet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, mallory := newTestMachine("node-a"), newTestMachine("node-a")
	first := a.report(t, EventChecked, "1.0.0", "", "")
	if err := f.Ingest(first); err != nil {
		t.Fatalf("first report: %v", err)
	}
	tampered := strings.Replace(string(a.report(t, EventChecked, "1.0.0", "", "")), `"event":"checked"`, `"event":"error"`, 1)
	forged, _ := json.Marshal(SignedReport{Report: json.RawMessage(`{"machine":"node-a"}`), Sig: "AAAA"})
	for _, tc := range []struct {
		name string
		body []byte
		want error
	}{
		{"another key for the same machine", mallory.report(t, EventRolledBack, "1.0.0", "1.1.0", "fake"), ErrReportRefused},
		{"replayed", first, ErrReportRefused},
		{"tampered", []byte(tampered), ErrReportSignature},
		{"forged", forged, nil},
		{"garbage", []byte("{"), nil},
		{"too big", make([]byte, MaxReportBytes+1), nil},
	} {
		err := f.Ingest(tc.body)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if m := f.View(0).Last[0]; m.Event != EventChecked || m.Reason != "" {
		t.Errorf("a refused report changed the machine: %+v", m)
	}
	// Bad fields, even when signed.
	for _, r := range []Report{
		{Machine: "", Channel: "stable", Running: "1.0.0", Event: EventChecked, Seq: 9},
		{Machine: "x y", Channel: "stable", Running: "1.0.0", Event: EventChecked, Seq: 9},
		{Machine: "b", Channel: "stable", Running: "1.0.0", Event: "exploded", Seq: 9},
		{Machine: "b", Channel: "stable", Running: "new", Event: EventChecked, Seq: 9},
		{Machine: "b", Channel: "../etc", Running: "1.0.0", Event: EventChecked, Seq: 9},
	} {
		b, _ := SignReport(r, a.key)
		if err := f.Ingest(b); err == nil {
			t.Errorf("accepted %+v", r)
		}
	}
	// New machine IDs stop at the limit; known machines still report.
	f.MaxMachines = 1
	if err := f.Ingest(newTestMachine("node-b").report(t, EventChecked, "1.0.0", "", "")); !errors.Is(err, ErrReportRefused) {
		t.Errorf("a machine past the limit: %v", err)
	}
	if err := f.Ingest(a.report(t, EventChecked, "1.0.0", "", "")); err != nil {
		t.Errorf("a known machine at the limit: %v", err)
	}
	f.MaxMachines = 0
	// After forget, a reinstalled machine with a new key is accepted.
	if !f.Forget("node-a") {
		t.Fatal("forget: machine not found")
	}
	if err := f.Ingest(mallory.report(t, EventChecked, "1.0.0", "", "")); err != nil {
		t.Fatalf("after forget: %v", err)
	}
}

// TestFleetHaltAndRestart: failures of installed machines halt the rollout
// with a reason; nodes then hold back; a restarted server keeps machines,
// history and the halt; an operator's resume lifts it.
func TestFleetHaltAndRestart(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFleet(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &Rollout{Channel: "stable", Version: "1.1.0", Percent: 100, State: RolloutActive, Halt: DefaultHaltRule, Start: time.Now()}
	if err := WriteRollout(dir, r); err != nil {
		t.Fatal(err)
	}
	ms := []*testMachine{newTestMachine("m1"), newTestMachine("m2"), newTestMachine("m3"), newTestMachine("m4")}
	ingest := func(m *testMachine, ev, running, version, reason string) {
		t.Helper()
		if err := f.Ingest(m.report(t, ev, running, version, reason)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms[:3] {
		ingest(m, EventWritten, "1.0.0", "1.1.0", "")
	}
	ingest(ms[3], EventChecked, "1.0.0", "", "")
	ingest(ms[0], EventRolledBack, "1.0.0", "1.1.0", "slot b did not come up")
	if st := f.RolloutDoc("stable").Rollouts[0].State; st != RolloutActive {
		t.Fatalf("1 failure of the first 5 halted the rollout (%s)", st)
	}
	ingest(ms[1], EventUnhealthy, "1.1.0", "1.1.0", "kv did not join")
	doc := f.RolloutDoc("stable")
	if v := doc.Rollouts[0]; v.State != RolloutHalted || !strings.Contains(v.Reason, "kv did not join") {
		t.Fatalf("after 2 of 3 failed: %+v", v)
	}
	if d := doc.Decide("m4", "default", "1.0.0", "1.1.0"); d.Take != "" {
		t.Fatalf("a halted rollout admits a machine: %+v", d)
	}
	f.Sample()
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}

	f2, err := OpenFleet(dir)
	if err != nil {
		t.Fatal(err)
	}
	v := f2.View(0)
	if v.Machines != 4 || len(v.History) != 1 || len(v.Failed) != 2 {
		t.Fatalf("after restart: %d machines, %d samples, %d failed", v.Machines, len(v.History), len(v.Failed))
	}
	if st := f2.RolloutDoc("stable").Rollouts[0].State; st != RolloutHalted {
		t.Fatalf("halt lost in the restart: %s", st)
	}
	// The restarted server still knows each machine's key and sequence.
	if err := f2.Ingest(newTestMachine("m1").report(t, EventChecked, "1.0.0", "", "")); !errors.Is(err, ErrReportRefused) {
		t.Fatalf("after restart, another key for m1: %v", err)
	}
	if h, ok, err := ReadHalt(dir, "stable"); err != nil || !ok || h.Version != "1.1.0" {
		t.Fatalf("ReadHalt: %+v %v %v", h, ok, err)
	}
	// Resume: a new generation, old failures no longer count.
	r.Generation++
	r.Since = time.Now()
	if err := WriteRollout(dir, r); err != nil {
		t.Fatal(err)
	}
	if st := f2.RolloutDoc("stable").Rollouts[0]; st.State != RolloutActive {
		t.Fatalf("after resume: %+v", st)
	}
	if a := f2.View(0).Rollouts[0]; a.Failures != 0 || a.Installed != 3 {
		t.Fatalf("after resume: %d failures, %d installed; want 0 and 3", a.Failures, a.Installed)
	}
}

func TestFleetHTTP(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 16<<10)
	s, err := NewServer(tr.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Fleet, err = OpenFleet(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	c := tr.client(t, ts.URL+"/")
	ctx := context.Background()
	if d, err := c.Rollout(ctx, "stable"); err != nil || d != nil {
		t.Fatalf("no rollout: %+v %v", d, err)
	}
	m := newTestMachine("web-1")
	if err := c.SendReport(ctx, m.report(t, EventWritten, "1.0.0", "1.1.0", "")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendReport(ctx, newTestMachine("web-1").report(t, EventChecked, "1.0.0", "", "")); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("report with another key: %v", err)
	}
	if err := WriteRollout(s.Fleet.dir, &Rollout{Channel: "stable", Version: "1.1.0", Percent: 25, State: RolloutPaused, Halt: DefaultHaltRule}); err != nil {
		t.Fatal(err)
	}
	d, err := c.Rollout(ctx, "stable")
	if err != nil || len(d.Rollouts) != 1 || d.Rollouts[0].Percent != 25 || d.Rollouts[0].State != RolloutPaused {
		t.Fatalf("rollout doc: %+v %v", d, err)
	}
	resp, err := http.Get(ts.URL + "/v1/fleet")
	if err != nil {
		t.Fatal(err)
	}
	var v FleetView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v.Machines != 1 || v.Last[0].ID != "web-1" || v.Channels[0].Rollout.State != RolloutPaused {
		t.Fatalf("/v1/fleet: %+v", v)
	}
	for path, want := range map[string]string{"/": "<html", "/?part=body": "web-1"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) || !strings.Contains(string(b), "paused") {
			t.Errorf("GET %s: %s\n%s", path, resp.Status, b)
		}
		if strings.Contains(string(b), "http://") || strings.Contains(string(b), "https://") {
			t.Errorf("GET %s loads something from elsewhere", path)
		}
	}
	// The channel files are still served beside the fleet API.
	if _, err := c.Manifest(ctx, ""); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(ts.URL + "/v1/report")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/report: %s", resp.Status)
	}
}

// TestRolloutGate: the node's view. The rollout picks among signed
// releases of the channel or holds back; it cannot make the node take an
// unsigned or older one.
func TestRolloutGate(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 16<<10)
	tr.publish(t, "stable", "1.2.0")
	s, err := NewServer(tr.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	if s.Fleet, err = OpenFleet(dir); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	ctx := context.Background()
	var decisions []string
	c := tr.client(t, ts.URL+"/")
	c.Gate = c.RolloutGate("node-1", "", func(offered string, d Decision, err error) {
		decisions = append(decisions, offered+"->"+d.Take)
	})
	take := func() string {
		t.Helper()
		m, err := c.Manifest(ctx, "")
		if errors.Is(err, ErrNotNewer) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return m.Version
	}
	if v := take(); v != "1.2.0" {
		t.Fatalf("no rollout: took %q", v)
	}
	r := &Rollout{Channel: "stable", Version: "1.2.0", Percent: 0, State: RolloutActive, Halt: DefaultHaltRule}
	if err := WriteRollout(dir, r); err != nil {
		t.Fatal(err)
	}
	if v := take(); v != "" {
		t.Fatalf("at 0%%: took %q", v)
	}
	r.Barrier = "1.1.0"
	WriteRollout(dir, r)
	if v := take(); v != "1.1.0" {
		t.Fatalf("barrier 1.1.0: took %q", v)
	}
	// A barrier that was never signed for this channel is refused, and
	// one older than the running release is not a step at all.
	r.Barrier = "1.1.5"
	WriteRollout(dir, r)
	if _, err := c.Manifest(ctx, ""); err == nil || errors.Is(err, ErrNotNewer) {
		t.Fatalf("barrier without a signed release: %v", err)
	}
	c.Policy.Running = "1.1.0"
	r.Barrier, r.Percent = "1.0.0", 100
	WriteRollout(dir, r)
	if v := take(); v != "1.2.0" {
		t.Fatalf("at 100%%, barrier passed: took %q", v)
	}
	if len(decisions) != 5 {
		t.Errorf("decisions heard: %v", decisions)
	}
}

// memberSigner issues a cluster certificate (pith cluster issue) and
// returns a signer for reports.
func memberSigner(t *testing.T, ca *pki.CA, name string, role pki.Role) ReportSigner {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(pki.Request{Name: name, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCerts(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ReportSigner{Cert: certs[0].Raw, CertKey: key}
}

// TestReportMemberCertificate: a node with a cluster member certificate
// reports with it; the server checks it against the cluster CA, the role,
// and that one member reports for one machine.
func TestReportMemberCertificate(t *testing.T) {
	ca, err := pki.NewCA("demo", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA("other", time.Now())
	f, err := OpenFleet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	report := func(s ReportSigner, machine string) []byte {
		seq++
		b, err := s.Sign(Report{Machine: machine, Channel: "stable", Running: "1.0.0", Event: EventChecked, Seq: seq})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	n1 := memberSigner(t, ca, "node1", pki.Member)
	if err := f.Ingest(report(n1, "m1")); err == nil || !strings.Contains(err.Error(), "--cluster-ca") {
		t.Fatalf("member report without a configured CA: %v", err)
	}
	f.ClusterCAs = x509.NewCertPool()
	f.ClusterCAs.AddCert(ca.Cert)
	// m2 reported with a first-use key before its certificate came.
	k2 := newTestMachine("m2")
	if err := f.Ingest(k2.report(t, EventChecked, "1.0.0", "", "")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		body []byte
		ok   bool
	}{
		{"member", report(n1, "m1"), true},
		{"member again", report(n1, "m1"), true},
		{"same member for another machine", report(n1, "m9"), false},
		{"another member for m1", report(memberSigner(t, ca, "node2", pki.Member), "m1"), false},
		{"a bare key for m1", newTestMachine("m1").report(t, EventChecked, "1.0.0", "", ""), false},
		{"admin certificate", report(memberSigner(t, ca, "admin", pki.Admin), "m3"), false},
		{"another cluster's member", report(memberSigner(t, other, "node3", pki.Member), "m3"), false},
		{"key-bound machine gets its certificate", report(memberSigner(t, ca, "node4", pki.Member), "m2"), true},
		{"and its old key no longer counts", k2.report(t, EventChecked, "1.0.0", "", ""), false},
	} {
		err := f.Ingest(tc.body)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	// A tampered certificate-signed report.
	b := strings.Replace(string(report(n1, "m1")), `"event":"checked"`, `"event":"error"`, 1)
	if err := f.Ingest([]byte(b)); !errors.Is(err, ErrReportSignature) {
		t.Errorf("tampered member report: %v", err)
	}
	f.RequireMember = true
	if err := f.Ingest(newTestMachine("m5").report(t, EventChecked, "1.0.0", "", "")); err == nil {
		t.Error("key-signed report accepted with RequireMember")
	}
}
