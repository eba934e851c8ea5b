package fleetapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/agent/units/simunits"
	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/unitfile"
)

type cluster struct {
	t      *testing.T
	store  *schedule.MemStore
	clock  *schedule.FakeClock
	live   *schedule.Liveness
	eng    *schedule.Engine
	agents []*schedule.Agent
	sims   []*simunits.Sim
	srv    *httptest.Server
	c      *fleetv1.Client
}

func mux(store schedule.Store, live *schedule.Liveness, in Inspector) *http.ServeMux {
	m := http.NewServeMux()
	m.Handle(fleetv1.Prefix+"/", New(store, live))
	m.Handle(HeartbeatPath, Heartbeats(live, nil, nil))
	if in != nil {
		m.Handle(fleetv1.UnitsPath, Units(in))
	}
	return m
}

func newCluster(t *testing.T, n int) *cluster {
	cl := &cluster{t: t, store: schedule.NewMemStore(), clock: schedule.NewFakeClock()}
	cl.live = schedule.NewLiveness(cl.clock.Now, schedule.DefaultTTL)
	cl.eng = &schedule.Engine{Store: cl.store, Live: cl.live, Term: 1}
	for i := 0; i < n; i++ {
		sim, err := simunits.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		m := schedule.Machine{ID: fmt.Sprintf("machine%d", i), PublicIP: fmt.Sprintf("127.0.0.%d", i+1), Metadata: map[string]string{"idx": fmt.Sprint(i)}}
		cl.sims = append(cl.sims, sim)
		cl.agents = append(cl.agents, schedule.NewAgent(m, cl.store.State(), sim))
	}
	var in Inspector
	if n > 0 {
		in = cl.sims[0]
	}
	cl.srv = httptest.NewServer(mux(cl.store, cl.live, in))
	t.Cleanup(cl.srv.Close)
	var err error
	if cl.c, err = fleetv1.NewClient(cl.srv.URL); err != nil {
		t.Fatal(err)
	}
	cl.settle()
	return cl
}

// settle: agents reconcile and heartbeat over HTTP, the engine reconciles.
func (cl *cluster) settle() {
	cl.t.Helper()
	for i := 0; i < 2; i++ {
		for _, a := range cl.agents {
			_ = a.Reconcile(context.Background())
			b, _ := json.Marshal(a.Heartbeat())
			resp, err := http.Post(cl.srv.URL+HeartbeatPath, "application/json", bytes.NewReader(b))
			if err != nil {
				cl.t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				cl.t.Fatalf("heartbeat: %s", resp.Status)
			}
		}
		if _, err := cl.eng.Reconcile(context.Background()); err != nil {
			cl.t.Fatal(err)
		}
	}
}

func (cl *cluster) raw(method, path, ctype, body string) (int, string) {
	cl.t.Helper()
	req, _ := http.NewRequest(method, cl.srv.URL+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cl.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const svc = `{"name":"web.service","desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep 1d"},{"section":"X-Fleet","name":"Conflicts","value":"web*"}]}`

func TestUnitsLifecycleAndWireFormat(t *testing.T) {
	cl := newCluster(t, 2)
	if code, body := cl.raw("PUT", fleetv1.Prefix+"/units/web.service", "application/json", svc); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	cl.settle()
	code, body := cl.raw("GET", fleetv1.Prefix+"/units/web.service", "", "")
	if code != 200 {
		t.Fatalf("get: %d %s", code, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "desiredState", "currentState", "machineID", "options"} {
		if _, ok := m[k]; !ok {
			t.Errorf("unit JSON lacks %q: %s", k, body)
		}
	}
	if m["currentState"] != "launched" || m["desiredState"] != "launched" {
		t.Errorf("states in %s", body)
	}
	opt := m["options"].([]any)[0].(map[string]any)
	if opt["section"] != "Service" || opt["name"] != "ExecStart" || opt["value"] != "/bin/sleep 1d" {
		t.Errorf("option JSON %v", opt)
	}
	// Same options again with a new state: an update, 204.
	if code, body := cl.raw("PUT", fleetv1.Prefix+"/units/web.service", "application/json", `{"desiredState":"loaded"}`); code != 204 {
		t.Fatalf("update: %d %s", code, body)
	}
	cl.settle()
	u, err := cl.c.Unit(context.Background(), "web.service")
	if err != nil || u.DesiredState != "loaded" || u.CurrentState != "loaded" || u.MachineID == "" {
		t.Fatalf("after stop: %+v %v", u, err)
	}
	// State rows use fleet's names.
	code, body = cl.raw("GET", fleetv1.Prefix+"/state?unitName=web.service", "", "")
	if code != 200 || !strings.Contains(body, `"systemdActiveState":"inactive"`) || !strings.Contains(body, `"systemdLoadState":"loaded"`) || !strings.Contains(body, `"machineID":"`+u.MachineID+`"`) {
		t.Fatalf("state: %d %s", code, body)
	}
	// New options without a state: contents replaced, state kept.
	if code, body := cl.raw("PUT", fleetv1.Prefix+"/units/web.service", "application/json", `{"options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep 2d"}]}`); code != 204 {
		t.Fatalf("replace: %d %s", code, body)
	}
	cl.settle()
	u, err = cl.c.Unit(context.Background(), "web.service")
	if err != nil || u.DesiredState != "loaded" || u.CurrentState != "loaded" || len(u.Options) != 1 || u.Options[0].Value != "/bin/sleep 2d" {
		t.Fatalf("after replace: %+v %v", u, err)
	}
	if code, _ := cl.raw("DELETE", fleetv1.Prefix+"/units/web.service", "", ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	code, body = cl.raw("GET", fleetv1.Prefix+"/units/web.service", "", "")
	if code != 404 || body != `{"error":{"code":404,"message":"unit does not exist"}}` {
		t.Fatalf("get deleted: %d %s", code, body)
	}
	if code, body := cl.raw("DELETE", fleetv1.Prefix+"/units/web.service", "", ""); code != 404 || !strings.Contains(body, "unit does not exist") {
		t.Fatalf("delete missing: %d %s", code, body)
	}
}

func TestSetErrors(t *testing.T) {
	cl := newCluster(t, 1)
	tests := []struct {
		name, method, path, ctype, body string
		code                            int
		msg                             string
	}{
		{"content type", "PUT", "/units/a.service", "text/plain", svc, 415, "only acceptable Content-Type is application/json"},
		{"bad json", "PUT", "/units/a.service", "application/json", `{"name":`, 400, "unable to decode body"},
		{"name mismatch", "PUT", "/units/a.service", "application/json", svc, 400, `name in URL "a.service" differs from unit name in request body "web.service"`},
		{"bad name", "PUT", "/units/a.txt", "application/json", `{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"x"}]}`, 400, `unknown type "txt"`},
		{"unknown x-fleet", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"X-Fleet","name":"Bogus","value":"x"}]}`, 400, "unrecognized requirement"},
		{"conflicting options", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"X-Fleet","name":"Global","value":"true"},{"section":"X-Fleet","name":"Conflicts","value":"b*"}]}`, 400, "Global=true allows only MachineMetadata"},
		{"no options", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched"}`, 409, "unit does not exist and options field empty"},
		{"bad state", "PUT", "/units/a.service", "application/json", `{"desiredState":"running","options":[{"section":"Service","name":"ExecStart","value":"x"}]}`, 400, "invalid desired state"},
		{"template start", "PUT", "/units/a@.service", "application/json", `{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"x"}]}`, 400, "template"},
		{"huge", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"Service","name":"Environment","value":"` + strings.Repeat("x", 2*unitfile.MaxUnitFileSize) + `"}]}`, 400, "limit"},
		{"huge body", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"Service","name":"Environment","value":"` + strings.Repeat("x", MaxBody) + `"}]}`, 413, "a unit file may be at most 262144 bytes"},
		{"too many options", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[` + strings.Repeat(`{"section":"Service","name":"Environment","value":"x"},`, unitfile.MaxUnitOptions) + `{"section":"Service","name":"ExecStart","value":"x"}]}`, 400, "options, over the limit of 4096"},
		{"long name", "PUT", "/units/" + strings.Repeat("a", unitfile.MaxUnitNameLen) + ".service", "application/json", `{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"x"}]}`, 400, "over systemd's limit of 256"},
		{"name chars", "PUT", "/units/a%20b.service", "application/json", `{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"x"}]}`, 400, `contains ' '`},
		{"no suffix", "PUT", "/units/web", "application/json", `{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"x"}]}`, 400, "no type suffix"},
		{"line break in value", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/a\n[X-Fleet]"}]}`, 400, "remove line breaks"},
		{"bad option name", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"Service","name":"Exec Start","value":"x"}]}`, 400, "malformed option name"},
		{"null option", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[null]}`, 400, "null unit option"},
		{"machineid with conflicts", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"X-Fleet","name":"MachineID","value":"abc"},{"section":"X-Fleet","name":"Conflicts","value":"b*"}]}`, 400, "MachineID cannot be used with Conflicts"},
		{"machineof itself", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"X-Fleet","name":"MachineOf","value":"a.service"}]}`, 400, "names the unit itself"},
		{"machineof conflicts", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"X-Fleet","name":"MachineOf","value":"b.service"},{"section":"X-Fleet","name":"Conflicts","value":"b*"}]}`, 400, "unresolvable requirements"},
		{"bad glob", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"X-Fleet","name":"Conflicts","value":"b["}]}`, 400, "bad glob"},
		{"bad global", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"X-Fleet","name":"Global","value":"maybe"}]}`, 400, "not a boolean"},
		{"bad metadata", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"X-Fleet","name":"MachineMetadata","value":"region"}]}`, 400, "is not key=value"},
		{"unterminated quote", "PUT", "/units/a.service", "application/json", `{"desiredState":"launched","options":[{"section":"X-Fleet","name":"MachineMetadata","value":"\"a=b"}]}`, 400, "unterminated quote"},
		{"post collection", "POST", "/units", "application/json", "{}", 405, "only GET supported"},
		{"bad token", "GET", "/units?nextPageToken=zzz", "", "", 400, "invalid page token"},
		{"unknown path", "GET", "/nothing", "", "", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := cl.raw(tc.method, fleetv1.Prefix+tc.path, tc.ctype, tc.body)
			var eb fleetv1.ErrorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatalf("error body not JSON: %s", body)
			}
			if code != tc.code || eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.msg) {
				t.Fatalf("got %d %s, want %d %q", code, body, tc.code, tc.msg)
			}
		})
	}
	if us, err := cl.c.Units(context.Background()); err != nil || len(us) != 0 {
		t.Fatalf("bad requests stored units: %v %v", us, err)
	}
	// Existing unit: an update without desiredState is a conflict.
	if code, _ := cl.raw("PUT", fleetv1.Prefix+"/units/web.service", "application/json", svc); code != 201 {
		t.Fatal("create failed")
	}
	if code, body := cl.raw("PUT", fleetv1.Prefix+"/units/web.service", "application/json", `{"name":"web.service"}`); code != 409 || !strings.Contains(body, "must provide DesiredState to update existing unit") {
		t.Fatalf("update without state: %d %s", code, body)
	}
	// A bad replacement leaves the stored unit as it was.
	before := cl.store.State().Unit("web.service")
	if code, body := cl.raw("PUT", fleetv1.Prefix+"/units/web.service", "application/json", `{"desiredState":"inactive","options":[{"section":"X-Fleet","name":"Bogus","value":"1"}]}`); code != 400 || !strings.Contains(body, "unrecognized requirement") {
		t.Fatalf("bad replacement: %d %s", code, body)
	}
	if after := cl.store.State().Unit("web.service"); after.Hash != before.Hash || after.Desired != before.Desired {
		t.Fatalf("bad replacement changed the unit: %+v -> %+v", before, after)
	}
}

func TestPagination(t *testing.T) {
	cl := newCluster(t, 0)
	ctx := context.Background()
	for i := 0; i < 250; i++ {
		err := cl.c.CreateUnit(ctx, &fleetv1.Unit{Name: fmt.Sprintf("u%03d.service", i), DesiredState: "inactive",
			Options: []*unitfile.UnitOption{{Section: "Service", Name: "ExecStart", Value: "/bin/true"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	var sizes []int
	tok := ""
	for {
		var p fleetv1.UnitPage
		q := ""
		if tok != "" {
			q = "?" + url.Values{"nextPageToken": {tok}}.Encode()
		}
		code, body := cl.raw("GET", fleetv1.Prefix+"/units"+q, "", "")
		if code != 200 || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("page: %d", code)
		}
		sizes = append(sizes, len(p.Units))
		if p.NextPageToken == "" {
			break
		}
		tok = p.NextPageToken
	}
	if fmt.Sprint(sizes) != "[100 100 50]" {
		t.Fatalf("page sizes %v", sizes)
	}
	all, err := cl.c.Units(ctx)
	if err != nil || len(all) != 250 || all[0].Name != "u000.service" || all[249].Name != "u249.service" {
		t.Fatalf("client saw %d units, %v", len(all), err)
	}
}

func TestMachinesStateDiscoveryHeartbeat(t *testing.T) {
	cl := newCluster(t, 3)
	ctx := context.Background()
	ms, err := cl.c.Machines(ctx)
	if err != nil || len(ms) != 3 || ms[1].ID != "machine1" || ms[1].PrimaryIP != "127.0.0.2" || ms[1].Metadata["idx"] != "1" {
		t.Fatalf("machines %v %v", ms, err)
	}
	code, body := cl.raw("GET", fleetv1.Prefix+"/machines", "", "")
	if code != 200 || !strings.Contains(body, `"primaryIP":"127.0.0.1"`) || !strings.Contains(body, `"metadata":{"idx":"0"}`) {
		t.Fatalf("machines JSON %s", body)
	}
	if err := cl.c.CreateUnit(ctx, &fleetv1.Unit{Name: "g.service", DesiredState: "launched", Options: []*unitfile.UnitOption{
		{Section: "Service", Name: "ExecStart", Value: "/bin/true"}, {Section: "X-Fleet", Name: "Global", Value: "true"}}}); err != nil {
		t.Fatal(err)
	}
	cl.settle()
	st, err := cl.c.UnitStates(ctx, []string{"g.service"}, nil)
	if err != nil || len(st) != 3 {
		t.Fatalf("global states %v %v", st, err)
	}
	st, err = cl.c.UnitStates(ctx, nil, []string{"machine2"})
	if err != nil || len(st) != 1 || st[0].MachineID != "machine2" || st[0].SystemdActiveState != "active" {
		t.Fatalf("machine2 states %+v %v", st, err)
	}
	// One unit's state (fleetctl start polls it): the first machine's for
	// a global unit, and fleet's 404 body for a unit nobody reports.
	var one fleetv1.UnitState
	code, body = cl.raw("GET", fleetv1.Prefix+"/state/g.service", "", "")
	if code != 200 || json.Unmarshal([]byte(body), &one) != nil || one.Name != "g.service" || one.MachineID != "machine0" || one.SystemdActiveState != "active" || one.SystemdLoadState != "loaded" {
		t.Fatalf("state of g.service: %d %s", code, body)
	}
	if code, body = cl.raw("GET", fleetv1.Prefix+"/state/nope.service", "", ""); code != 404 || !strings.Contains(body, "unit state does not exist") {
		t.Fatalf("state of an unknown unit: %d %s", code, body)
	}
	if code, _ = cl.raw("PUT", fleetv1.Prefix+"/state/g.service", "application/json", "{}"); code != 405 {
		t.Fatalf("PUT state: %d", code)
	}
	code, body = cl.raw("GET", fleetv1.Prefix+"/discovery", "", "")
	var d map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &d) != nil || d["kind"] != "discovery#restDescription" || d["basePath"] != "/fleet/v1/" {
		t.Fatalf("discovery %d", code)
	}
	code, body = cl.raw("POST", HeartbeatPath, "application/json", `{"machine":{}}`)
	if code != 400 || !strings.Contains(body, "without machine id") {
		t.Fatalf("bad heartbeat %d %s", code, body)
	}
	code, _ = cl.raw("GET", HeartbeatPath, "", "")
	if code != 405 {
		t.Fatalf("GET heartbeat %d", code)
	}
}

func TestUnixSocketAndInspect(t *testing.T) {
	cl := newCluster(t, 1)
	sock := filepath.Join(t.TempDir(), "fleet.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux(cl.store, cl.live, cl.sims[0])}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := fleetv1.NewClient("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.CreateUnit(ctx, &fleetv1.Unit{Name: "a.service", DesiredState: "launched", Options: []*unitfile.UnitOption{{Section: "Service", Name: "ExecStart", Value: "/bin/true"}}}); err != nil {
		t.Fatal(err)
	}
	cl.settle()
	u, err := c.Unit(ctx, "a.service")
	if err != nil || u.MachineID != "machine0" || u.CurrentState != "launched" {
		t.Fatalf("over unix socket: %+v %v", u, err)
	}
	var out bytes.Buffer
	if err := fleetv1.Inspect(ctx, http.DefaultClient, cl.srv.URL, "a.service", "status", 0, false, &out); err != nil || !strings.Contains(out.String(), "Active: active (running)") {
		t.Fatalf("status: %v %q", err, out.String())
	}
	out.Reset()
	if err := fleetv1.Inspect(ctx, http.DefaultClient, cl.srv.URL, "a.service", "journal", 1, false, &out); err != nil || strings.Count(out.String(), "\n") != 1 || !strings.Contains(out.String(), "start") {
		t.Fatalf("journal: %v %q", err, out.String())
	}
	err = fleetv1.Inspect(ctx, http.DefaultClient, cl.srv.URL, "a.txt", "status", 0, false, &out)
	if ae, ok := err.(*fleetv1.APIError); !ok || ae.Code != 400 {
		t.Fatalf("bad name inspect: %v", err)
	}
	if _, err := fleetv1.NewClient("ftp://x"); err == nil {
		t.Fatal("ftp endpoint accepted")
	}
}

// The leader answers a heartbeat with its applied index, which a
// restarting agent waits for before it acts on its assignments.
func TestHeartbeatAnswerCarriesAppliedIndex(t *testing.T) {
	live := schedule.NewLiveness(schedule.NewFakeClock().Now, schedule.DefaultTTL)
	srv := httptest.NewServer(Heartbeats(live, nil, func() uint64 { return 42 }))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"machine":{"id":"m1","publicIP":"127.0.0.1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get(AppliedIndexHeader) != "42" {
		t.Fatalf("status %d, %s %q; want 204 and 42", resp.StatusCode, AppliedIndexHeader, resp.Header.Get(AppliedIndexHeader))
	}
	if live.Status("m1") != schedule.Alive {
		t.Fatal("the heartbeat was not recorded")
	}
}
