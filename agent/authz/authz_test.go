package authz

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/pki"
)

func TestDecide(t *testing.T) {
	const (
		A = pki.Admin
		R = pki.Reader
		M = pki.Member
	)
	for _, tc := range []struct {
		role         pki.Role
		method, path string
		ok           bool
	}{
		{R, "GET", "/v2/keys/a", true},
		{R, "GET", "/v2/keys", true},
		{R, "PUT", "/v2/keys/a", false},
		{R, "POST", "/v2/keys/queue", false},
		{R, "DELETE", "/v2/keys/a", false},
		{R, "PUT", "/v2/keys/coreos.com/updateengine/rebootlock/semaphore", false},
		{R, "GET", "/v2/members", true},
		{R, "POST", "/v2/members", false},
		{R, "DELETE", "/v2/members/abc", false},
		{R, "GET", "/v2/stats/self", true},
		{R, "GET", "/fleet/v1/units", true},
		{R, "GET", "/fleet/v1/machines", true},
		{R, "GET", "/fleet/v1/state", true},
		{R, "PUT", "/fleet/v1/units/a.service", false},
		{R, "DELETE", "/fleet/v1/units/a.service", false},
		{R, "GET", "/pith/v1/units/a.service", true},
		{R, "GET", "/pith/v1/update", true},
		{R, "POST", "/pith/v1/update/check", false},
		{R, "GET", "/pith/v1/locks", true},
		{R, "POST", "/pith/v1/locks/unlock", false},
		{R, "POST", "/pith/v1/schedule/heartbeat", false},
		{R, "GET", "/debug/pprof/heap", false},
		{A, "PUT", "/v2/keys/a", true},
		{A, "PUT", "/fleet/v1/units/a.service", true},
		{A, "DELETE", "/fleet/v1/units/a.service", true},
		{A, "POST", "/v2/members", true},
		{A, "DELETE", "/v2/members/abc", true},
		{A, "POST", "/pith/v1/locks/unlock", true},
		{A, "POST", "/pith/v1/update/check", true},
		{A, "POST", "/pith/v1/schedule/heartbeat", false},
		{A, "GET", "/debug/pprof/heap", true},
		{M, "POST", "/pith/v1/schedule/heartbeat", true},
		{M, "POST", "/v2/members", true},
		{M, "GET", "/health", true},
		{M, "PUT", "/v2/keys/a", false},
		{M, "GET", "/v2/keys/a", false},
		{M, "DELETE", "/v2/members/abc", false},
		{M, "PUT", "/fleet/v1/units/a.service", false},
		{A, "GET", "/nowhere", false},
		{A, "OPTIONS", "/v2/keys/a", false},
		{Root, "DELETE", "/v2/members/abc", true},
	} {
		ok, why := Decide(tc.role, tc.method, tc.path)
		if ok != tc.ok {
			t.Errorf("%s %s %s: %v (%s), want %v", tc.role, tc.method, tc.path, ok, why, tc.ok)
		}
		if !ok && (why == "" || strings.Contains(why, "\n")) {
			t.Errorf("%s %s %s: reason %q is not one line", tc.role, tc.method, tc.path, why)
		}
	}
}

// TestRulesReachable checks that no rule is shadowed by an earlier one for
// all of its methods (a dead line in the table misleads its reader).
func TestRulesReachable(t *testing.T) {
	for i, r := range Rules {
		live := false
		for _, m := range r.Methods {
			p := strings.TrimSuffix(r.Path, "/") + "/x"
			if !strings.HasSuffix(r.Path, "/") {
				p = r.Path
			}
			first := -1
			for j, o := range Rules {
				if matchPath(o.Path, p) && slices.Contains(o.Methods, m) {
					first = j
					break
				}
			}
			live = live || first == i
		}
		if !live {
			t.Errorf("rule %d %v %s is shadowed", i, r.Methods, r.Path)
		}
	}
}

type ctxKey string

func reqAs(role pki.Role, method, path string, mark ctxKey) *http.Request {
	r := httptest.NewRequest(method, path, nil)
	if role != "" {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: "x", OrganizationalUnit: []string{string(role)}}}
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	if mark != "" {
		r = r.WithContext(context.WithValue(r.Context(), mark, true))
	}
	return r
}

func TestGuard(t *testing.T) {
	marked := func(k ctxKey) func(*http.Request) bool {
		return func(r *http.Request) bool { v, _ := r.Context().Value(k).(bool); return v }
	}
	g := Guard{Secure: true, FromPeer: marked("peer"), FromSocket: marked("sock")}
	for _, tc := range []struct {
		name         string
		role         pki.Role
		mark         ctxKey
		header       string // RoleHeader sent by the caller
		method, path string
		status       int
		seenRole     string // RoleHeader the handler sees
	}{
		{"admin writes", pki.Admin, "", "", "PUT", "/v2/keys/a", 200, "admin"},
		{"reader writes", pki.Reader, "", "", "PUT", "/v2/keys/a", 403, ""},
		{"reader claims admin", pki.Reader, "", "admin", "PUT", "/v2/keys/a", 403, ""},
		{"reader reads, claim replaced", pki.Reader, "", "admin", "GET", "/v2/keys/a", 200, "reader"},
		{"no certificate", "", "", "", "GET", "/v2/keys/a", 403, ""},
		{"certificate without role", "nobody", "", "", "GET", "/v2/keys/a", 403, ""},
		{"dot segments", pki.Reader, "", "", "GET", "/v2/keys/../../fleet/v1/units", 403, ""},
		{"socket is root", "", "sock", "", "DELETE", "/v2/members/1", 200, "root"},
		{"forwarded admin write", pki.Member, "peer", "admin", "PUT", "/v2/keys/a", 200, "admin"},
		{"forwarded reader write", pki.Member, "peer", "reader", "PUT", "/v2/keys/a", 403, ""},
		{"member heartbeat", pki.Member, "peer", "", "POST", "/pith/v1/schedule/heartbeat", 200, "member"},
		{"member writes keys itself", pki.Member, "peer", "", "PUT", "/v2/keys/a", 403, ""},
		{"admin cert on peer port", pki.Admin, "peer", "admin", "PUT", "/v2/keys/a", 403, ""},
		{"unknown forwarded role", pki.Member, "peer", "god", "GET", "/v2/keys/a", 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := ""
			called := false
			h := g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called, seen = true, r.Header.Get(RoleHeader)
			}))
			r := reqAs(tc.role, tc.method, tc.path, tc.mark)
			if tc.header != "" {
				r.Header.Set(RoleHeader, tc.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 403 {
				if called {
					t.Fatal("refused request reached the handler")
				}
				var body struct{ Message string }
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || !strings.HasPrefix(body.Message, "forbidden: ") || strings.Count(w.Body.String(), "\n") != 1 {
					t.Fatalf("refusal body %q (%v)", w.Body, err)
				}
				return
			}
			if seen != tc.seenRole {
				t.Fatalf("handler saw role %q, want %q", seen, tc.seenRole)
			}
		})
	}
	// Without a CA nothing is checked, but a caller's role claim is still
	// replaced.
	open := Guard{FromPeer: marked("peer")}
	var seen string
	h := open.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Get(RoleHeader) }))
	r := reqAs("", "PUT", "/v2/keys/a", "")
	r.Header.Set(RoleHeader, "root")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || seen != "admin" {
		t.Fatalf("open guard: %d, role %q", w.Code, seen)
	}
}
