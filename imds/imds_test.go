package imds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// service is an EC2-like metadata service: IMDSv2 tokens when v2 (and
// then every GET must carry one), an instance id unless notEC2, user-data
// unless "", and failing answers before it works (down, 503 each).
type service struct {
	v2, notEC2 bool
	userData   string
	down       int32
	hits       atomic.Int32
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.hits.Add(1) <= s.down {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Path == "/latest/api/token" {
		if !s.v2 || r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != "21600" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "tok\n")
		return
	}
	if s.v2 && r.Header.Get("X-aws-ec2-metadata-token") != "tok" {
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	switch {
	case r.URL.Path == "/latest/meta-data/instance-id" && !s.notEC2:
		fmt.Fprint(w, "i-1\n")
	case r.URL.Path == "/latest/user-data" && s.userData != "":
		fmt.Fprint(w, s.userData)
	default:
		http.NotFound(w, r)
	}
}

func httpDo() Do {
	return HTTP{Client: &http.Client{}, Timeout: 2 * time.Second, Attempts: 3, Max: 1 << 20}.Do
}

func TestOpenUserData(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  *service
		ud   string
		err  error  // errors.Is
		msg  string // in the error
	}{
		{name: "IMDSv2", srv: &service{v2: true, userData: "#cloud-config\n"}, ud: "#cloud-config\n"},
		{name: "IMDSv1 without tokens", srv: &service{userData: "x"}, ud: "x"},
		{name: "no user-data", srv: &service{v2: true}},
		{name: "5xx answers are retried", srv: &service{v2: true, userData: "x", down: 2}, ud: "x"},
		{name: "not EC2's service", srv: &service{notEC2: true}, err: ErrNotEC2},
		{name: "tokens required, none issued", srv: &service{v2: true}, msg: "requires an IMDSv2 token but issued none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(tc.srv)
			defer ts.Close()
			c := &Client{URL: ts.URL, Do: httpDo()}
			if tc.msg != "" {
				// A v2 service whose token request fails: the client falls
				// back to v1 and the GET is refused.
				c.Do = func(ctx context.Context, m, u string, h map[string]string) (int, []byte, error) {
					if strings.HasSuffix(u, "/latest/api/token") {
						return http.StatusForbidden, nil, nil
					}
					return httpDo()(ctx, m, u, h)
				}
			}
			s, err := c.Open(t.Context())
			var ud []byte
			if err == nil {
				if s.InstanceID != "i-1" {
					t.Errorf("instance id %q", s.InstanceID)
				}
				ud, err = s.UserData(t.Context())
			}
			switch {
			case tc.err != nil || tc.msg != "":
				if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %v; want %v %q", err, tc.err, tc.msg)
				}
			case err != nil:
				t.Fatal(err)
			case string(ud) != tc.ud:
				t.Fatalf("user-data %q, want %q", ud, tc.ud)
			}
		})
	}
}

// Nothing listening: one OnWait per pause until Wait is spent, then
// ErrNoService; a zero Wait tries once.
func TestOpenNoService(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		wait      time.Duration
		minWaits  int
		maxWaits  int
		minLasted time.Duration
	}{
		{0, 0, 0, 0},
		{time.Second, 5, 11, time.Second},
	} {
		t.Run(tc.wait.String(), func(t *testing.T) {
			waits := 0
			c := &Client{URL: url, Wait: tc.wait, Pause: 100 * time.Millisecond,
				Do:     HTTP{Client: &http.Client{}, Timeout: time.Second, Attempts: 1, Max: 1 << 20}.Do,
				OnWait: func(err error, left time.Duration) { waits++ }}
			start := time.Now()
			_, err := c.Open(t.Context())
			if !errors.Is(err, ErrNoService) || !strings.Contains(err.Error(), "within "+tc.wait.String()) {
				t.Fatalf("error %v; want ErrNoService within %v", err, tc.wait)
			}
			if waits < tc.minWaits || waits > tc.maxWaits || time.Since(start) < tc.minLasted {
				t.Errorf("%d waits in %v; want %d..%d, at least %v", waits, time.Since(start), tc.minWaits, tc.maxWaits, tc.minLasted)
			}
		})
	}
}

// A body over Max is refused, not cut.
func TestHTTPMax(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, strings.Repeat("x", 2<<20)) }))
	defer ts.Close()
	_, _, err := HTTP{Client: &http.Client{}, Timeout: 5 * time.Second, Attempts: 1, Max: 1 << 20}.Do(t.Context(), http.MethodGet, ts.URL, nil)
	if err == nil || !strings.Contains(err.Error(), "larger than 1 MiB") {
		t.Fatalf("error %v", err)
	}
}
