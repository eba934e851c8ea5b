package channels

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPayloadData is compressible but not trivially so, like a filesystem.
func testPayloadData(seed int64, n int) []byte {
	r := rand.New(rand.NewSource(seed))
	b := make([]byte, n)
	words := []string{"usr", "bin", "lib", "systemd", "pith", "\x00\x00\x00\x00", "etc"}
	for i := 0; i < n; {
		if r.Intn(4) == 0 {
			b[i] = byte(r.Intn(256))
			i++
			continue
		}
		i += copy(b[i:], words[r.Intn(len(words))])
	}
	return b
}

type testRepo struct {
	dir    string
	key    ed25519.PrivateKey
	usr    []byte
	kernel []byte
	m      *Manifest
}

func bytesSource(name, file string, data []byte) PayloadSource {
	return PayloadSource{Name: name, File: file, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}
}

func newTestRepo(t testing.TB, version string, usrSize int) *testRepo {
	t.Helper()
	tr := &testRepo{dir: t.TempDir(), key: testKey(t), usr: testPayloadData(1, usrSize), kernel: testPayloadData(2, 300<<10)}
	tr.publish(t, "stable", version)
	return tr
}

func (tr *testRepo) publish(t testing.TB, channel, version string) {
	t.Helper()
	m, err := Publish(tr.dir, Release{
		Channel: channel, Version: version, Platform: "linux/amd64",
		Payloads: []PayloadSource{bytesSource(PayloadUSR, "usr", tr.usr), bytesSource(PayloadKernel, "vmlinuz", tr.kernel)},
	}, []ed25519.PrivateKey{tr.key}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	tr.m = m
}

// serve starts the real channel server on 127.0.0.1, with an optional
// middleware in front of it to inject faults.
func (tr *testRepo) serve(t testing.TB, mw func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	s, err := NewServer(tr.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = s
	if mw != nil {
		h = mw(s)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return ts
}

func (tr *testRepo) client(t testing.TB, url string, keys ...ed25519.PublicKey) *Client {
	t.Helper()
	if len(keys) == 0 {
		keys = []ed25519.PublicKey{pubOf(tr.key)}
	}
	c, err := NewClient(url, Policy{Keys: NewKeyring(keys...), Channel: "stable", Platform: "linux/amd64", Running: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	c.Backoff = func(int) time.Duration { return time.Millisecond }
	return c
}

func TestFetchDownloadWrite(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 3<<20)
	ts := tr.serve(t, nil)
	c := tr.client(t, ts.URL)
	var last Progress
	c.Progress = func(p Progress) { last = p }
	ctx := context.Background()
	m, err := c.Manifest(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "1.1.0" {
		t.Fatalf("version %s", m.Version)
	}
	usr, _ := m.Payload(PayloadUSR)
	dir := t.TempDir()
	path, err := c.Download(ctx, usr, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !last.Final || last.Done != usr.Size || last.Total != usr.Size {
		t.Fatalf("last progress %+v", last)
	}
	// A target bigger than the payload, with old content that must survive
	// past the payload's end.
	target := filepath.Join(t.TempDir(), "usr-b")
	old := bytes.Repeat([]byte{0xee}, 4<<20)
	if err := os.WriteFile(target, old, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := WritePayload(ctx, path, usr, Target{Path: target, Offset: 4096}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != int64(len(tr.usr)) {
		t.Fatalf("wrote %d bytes", st.Bytes)
	}
	got, _ := os.ReadFile(target)
	if !bytes.Equal(got[4096:4096+len(tr.usr)], tr.usr) || !bytes.Equal(got[:4096], old[:4096]) || !bytes.Equal(got[4096+len(tr.usr):], old[4096+len(tr.usr):]) {
		t.Fatal("target content differs from the payload or was written outside its range")
	}
	// Kernel to a file, atomically.
	kp, _ := m.Payload(PayloadKernel)
	kpath, err := c.Download(ctx, kp, dir)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "vmlinuz-b")
	if err := InstallFile(kpath, kp, dst); err != nil {
		t.Fatal(err)
	}
	if k, _ := os.ReadFile(dst); !bytes.Equal(k, tr.kernel) {
		t.Fatal("installed kernel differs")
	}
	// A second Download finds the verified file and fetches nothing.
	if p2, err := c.Download(ctx, usr, dir); err != nil || p2 != path {
		t.Fatalf("second download %q %v", p2, err)
	}
}

// cutAfter lets the first `cuts` payload responses send only n bytes and
// then drops the connection; it records every Range header it sees.
type cutAfter struct {
	mu     sync.Mutex
	n      int64
	cuts   int
	ranges []string
}

func (ca *cutAfter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/channels/") {
			next.ServeHTTP(w, r)
			return
		}
		ca.mu.Lock()
		ca.ranges = append(ca.ranges, r.Header.Get("Range"))
		cut := ca.cuts > 0
		if cut {
			ca.cuts--
		}
		ca.mu.Unlock()
		if cut {
			w = &limitedWriter{ResponseWriter: w, left: ca.n}
		}
		next.ServeHTTP(w, r)
	})
}

type limitedWriter struct {
	http.ResponseWriter
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, _ := l.ResponseWriter.Write(p)
	l.left -= int64(n)
	if l.left == 0 {
		if f, ok := l.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	return n, nil
}

func TestDownloadResumesWithinOneCall(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 2<<20)
	ca := &cutAfter{n: 300 << 10, cuts: 2}
	ts := tr.serve(t, ca.wrap)
	c := tr.client(t, ts.URL)
	m, err := c.Manifest(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	usr, _ := m.Payload(PayloadUSR)
	if usr.Size <= 2*ca.n {
		t.Fatalf("payload of %d bytes too small for the test", usr.Size)
	}
	path, err := c.Download(context.Background(), usr, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(path, usr); err != nil {
		t.Fatal(err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if len(ca.ranges) != 3 || ca.ranges[0] != "" || ca.ranges[1] != "bytes=307200-" || ca.ranges[2] != "bytes=614400-" {
		t.Fatalf("requests' Range headers %q; want a full request, then resumes at 307200 and 614400", ca.ranges)
	}
}

func TestDownloadResumesAcrossRestarts(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 2<<20)
	ca := &cutAfter{n: 500 << 10, cuts: 1}
	ts := tr.serve(t, ca.wrap)
	c := tr.client(t, ts.URL)
	c.MaxAttempts = 1 // the "process" dies after the first failure
	m, err := c.Manifest(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	usr, _ := m.Payload(PayloadUSR)
	dir := t.TempDir()
	if _, err := c.Download(context.Background(), usr, dir); err == nil {
		t.Fatal("first download did not fail")
	}
	st, err := os.Stat(filepath.Join(dir, usr.SHA256+".part"))
	if err != nil || st.Size() != ca.n {
		t.Fatalf("partial file after the cut: %v size %d, want %d", err, st.Size(), ca.n)
	}
	var first *Progress
	c.Progress = func(p Progress) {
		if first == nil {
			first = &p
		}
	}
	c2 := *c
	c2.MaxAttempts = 0
	path, err := c2.Download(context.Background(), usr, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(path, usr); err != nil {
		t.Fatal(err)
	}
	if first == nil || first.Resumed != ca.n {
		t.Fatalf("progress did not report the resume: %+v", first)
	}
	if got := ca.ranges[len(ca.ranges)-1]; got != "bytes=512000-" {
		t.Fatalf("second run's Range %q", got)
	}
}

func TestCorruptionDetected(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, tr *testRepo, usr Payload) func(http.Handler) http.Handler
		want    error
	}{
		{"byte flipped in the file on the server", func(t *testing.T, tr *testRepo, usr Payload) func(http.Handler) http.Handler {
			p := filepath.Join(tr.dir, filepath.FromSlash(usr.Path))
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return nil
		}, ErrHash},
		{"byte flipped in transit", func(t *testing.T, tr *testRepo, usr Payload) func(http.Handler) http.Handler {
			return func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					next.ServeHTTP(&flipWriter{ResponseWriter: w, at: 1000}, r)
				})
			}
		}, ErrHash},
		{"file truncated on the server", func(t *testing.T, tr *testRepo, usr Payload) func(http.Handler) http.Handler {
			if err := os.Truncate(filepath.Join(tr.dir, filepath.FromSlash(usr.Path)), usr.Size-10); err != nil {
				t.Fatal(err)
			}
			return nil
		}, ErrSize},
		{"file longer on the server", func(t *testing.T, tr *testRepo, usr Payload) func(http.Handler) http.Handler {
			f, _ := os.OpenFile(filepath.Join(tr.dir, filepath.FromSlash(usr.Path)), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("extra"))
			f.Close()
			return nil
		}, ErrSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRepo(t, "1.1.0", 1<<20)
			usr, _ := tr.m.Payload(PayloadUSR)
			ts := tr.serve(t, tc.corrupt(t, tr, usr))
			c := tr.client(t, ts.URL)
			m, err := c.Manifest(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			usr, _ = m.Payload(PayloadUSR)
			dir := t.TempDir()
			_, err = c.Download(context.Background(), usr, dir)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Download error %v, want %v", err, tc.want)
			}
			left, _ := os.ReadDir(dir)
			if len(left) != 0 {
				t.Fatalf("left %d files behind after a bad download", len(left))
			}
		})
	}
}

type flipWriter struct {
	http.ResponseWriter
	at, seen int64
}

func (f *flipWriter) Write(p []byte) (int, error) {
	if f.at >= f.seen && f.at < f.seen+int64(len(p)) {
		q := append([]byte(nil), p...)
		q[f.at-f.seen] ^= 0x80
		p = q
	}
	f.seen += int64(len(p))
	return f.ResponseWriter.Write(p)
}

func TestManifestRejectedByClient(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 64<<10)
	ts := tr.serve(t, nil)
	other := testKey(t)
	ctx := context.Background()
	if _, err := tr.client(t, ts.URL, pubOf(other)).Manifest(ctx, ""); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("wrong key: %v", err)
	}
	c := tr.client(t, ts.URL)
	c.Policy.Running = "1.1.0"
	if _, err := c.Manifest(ctx, ""); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("replay: %v", err)
	}
	if _, err := tr.client(t, ts.URL).Manifest(ctx, "beta"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing channel: %v", err)
	}
	// A beta manifest copied over stable's files is refused: the signed
	// channel name is part of the manifest.
	tr.publish(t, "beta", "1.2.0")
	for _, suf := range []string{".json", ".json.sig"} {
		b, _ := os.ReadFile(filepath.Join(tr.dir, "channels", "beta"+suf))
		os.WriteFile(filepath.Join(tr.dir, "channels", "stable"+suf), b, 0o644)
	}
	if _, err := tr.client(t, ts.URL).Manifest(ctx, ""); !errors.Is(err, ErrWrongChannel) {
		t.Fatalf("beta served as stable: %v", err)
	}
}

func TestManifestRefetchesStalePair(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 64<<10)
	oldSig, _ := os.ReadFile(filepath.Join(tr.dir, "channels", "stable.json.sig"))
	m1 := tr.m
	tr.publish(t, "stable", "1.2.0")
	served := 0
	ts := tr.serve(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".json.sig") && served == 0 {
				served++
				w.Write(oldSig) // as if read between the two renames
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	m, err := tr.client(t, ts.URL).Manifest(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "1.2.0" || m1.Version != "1.1.0" || served != 1 {
		t.Fatalf("got %s after %d stale answers", m.Version, served)
	}
}

func TestWritePayloadTargetTooSmall(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 1<<20)
	usr, _ := tr.m.Payload(PayloadUSR)
	src := filepath.Join(tr.dir, filepath.FromSlash(usr.Path))
	target := filepath.Join(t.TempDir(), "small")
	orig := bytes.Repeat([]byte{7}, 1<<20)
	os.WriteFile(target, orig, 0o600)
	_, err := WritePayload(context.Background(), src, usr, Target{Path: target, Offset: 512}, nil)
	if !errors.Is(err, ErrTargetTooSmall) {
		t.Fatalf("error %v", err)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, orig) {
		t.Fatal("target modified although the payload did not fit")
	}
	if _, err := WritePayload(context.Background(), src, usr, Target{Path: target + "-missing"}, nil); err == nil {
		t.Fatal("missing target created")
	}
	if _, err := os.Stat(target + "-missing"); err == nil {
		t.Fatal("missing target created")
	}
}

func TestServerPaths(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 64<<10)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o644)
	os.Symlink(outside, filepath.Join(tr.dir, "1.1.0", "link"))
	os.WriteFile(filepath.Join(tr.dir, "channels", ".stable.json.tmp1"), []byte("half"), 0o644)
	ts := tr.serve(t, nil)
	addr := strings.TrimPrefix(ts.URL, "http://")
	usr, _ := tr.m.Payload(PayloadUSR)
	raw := func(method, path string, hdr ...string) (int, string) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + strings.Join(hdr, "") + "\r\n"
		conn.Write([]byte(req))
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		method, path string
		hdr          []string
		want         int
	}{
		{"GET", "/channels/stable.json", nil, 200},
		{"HEAD", "/channels/stable.json", nil, 200},
		{"GET", "/" + usr.Path, []string{"Range: bytes=10-19\r\n"}, 206},
		{"GET", "/" + usr.Path, []string{"Range: bytes=999999999-\r\n"}, 416},
		{"POST", "/channels/stable.json", nil, 405},
		{"GET", "/../etc/passwd", nil, 400},
		{"GET", "/channels/../../etc/passwd", nil, 400},
		{"GET", "/%2e%2e/%2e%2e/etc/passwd", nil, 400},
		{"GET", "/channels/%2e%2e/1.1.0/manifest.json", nil, 400},
		{"GET", "/1.1.0/link", nil, 404},
		{"GET", "/channels/.stable.json.tmp1", nil, 400},
		{"GET", "/channels/", nil, 404},
		{"GET", "/1.1.0", nil, 404},
		{"GET", "/nope.json", nil, 404},
		{"GET", "/", nil, 200},
	}
	for _, tc := range tests {
		code, body := raw(tc.method, tc.path, tc.hdr...)
		if code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, code, tc.want)
		}
		if strings.Contains(body, "secret") || strings.Contains(body, "root:") {
			t.Errorf("%s %s leaked a file outside the repository", tc.method, tc.path)
		}
		if tc.want == 206 && len(body) != 10 {
			t.Errorf("range body %d bytes", len(body))
		}
	}
}

func TestPublishRules(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 64<<10)
	before, _ := os.ReadDir(tr.dir)
	for _, v := range []string{"1.1.0", "1.0.0", "c39b464"} {
		_, err := Publish(tr.dir, Release{Channel: "stable", Version: v, Platform: "linux/amd64",
			Payloads: []PayloadSource{bytesSource("usr", "usr", tr.usr)}}, []ed25519.PrivateKey{tr.key}, nil)
		if err == nil {
			t.Errorf("Publish %s accepted on a channel at 1.1.0", v)
		}
	}
	// A payload that fails to read leaves nothing behind.
	_, err := Publish(tr.dir, Release{Channel: "stable", Version: "1.3.0", Platform: "linux/amd64",
		Payloads: []PayloadSource{{Name: "usr", File: "usr", Open: func() (io.ReadCloser, error) { return nil, errors.New("boom") }}}},
		[]ed25519.PrivateKey{tr.key}, nil)
	if err == nil {
		t.Fatal("failing payload accepted")
	}
	after, _ := os.ReadDir(tr.dir)
	if len(after) != len(before) {
		t.Fatalf("failed release left files: %d entries, before %d", len(after), len(before))
	}
	if m, _ := ChannelManifest(tr.dir, "stable"); m.Version != "1.1.0" {
		t.Fatalf("channel moved to %s", m.Version)
	}
}

func TestPromote(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 64<<10)
	tr.publish(t, "beta", "1.2.0")
	trusted := NewKeyring(pubOf(tr.key))
	m, err := Promote(tr.dir, "beta", "stable", "", []ed25519.PrivateKey{tr.key}, trusted, 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.Channel != "stable" || m.Version != "1.2.0" {
		t.Fatalf("promoted %+v", m)
	}
	ts := tr.serve(t, nil)
	got, err := tr.client(t, ts.URL).Manifest(context.Background(), "")
	if err != nil || got.Version != "1.2.0" {
		t.Fatalf("stable after promote: %v %v", got, err)
	}
	if _, err := Promote(tr.dir, "beta", "stable", "", []ed25519.PrivateKey{tr.key}, trusted, 0); err == nil {
		t.Fatal("promoting the same version twice accepted")
	}
	if _, err := Promote(tr.dir, "", "stable", "1.1.0", []ed25519.PrivateKey{tr.key}, trusted, 0); err == nil {
		t.Fatal("promotion to an older version accepted")
	}
	if _, err := Promote(tr.dir, "", "alpha", "1.1.0", []ed25519.PrivateKey{tr.key}, NewKeyring(pubOf(testKey(t))), 0); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("promotion of a release signed by an untrusted key: %v", err)
	}
	// Old versions stay downloadable.
	if _, err := os.Stat(filepath.Join(tr.dir, "1.1.0", "usr.zst")); err != nil {
		t.Fatal(err)
	}
}

// TestResign: an expired channel is refused by nodes until the publisher
// re-signs it; the release itself stays as it was.
func TestResign(t *testing.T) {
	tr := newTestRepo(t, "1.1.0", 64<<10)
	trusted := NewKeyring(pubOf(tr.key))
	body, sig := readChannelFiles(t, tr.dir, "stable")
	m, err := Verify(body, sig, Policy{Keys: trusted})
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Expires.Sub(m.Released); d != DefaultValidity {
		t.Fatalf("published manifest valid for %s, want %s", d, DefaultValidity)
	}
	later := m.Expires.Add(time.Hour)
	if _, err := Verify(body, sig, Policy{Keys: trusted, Now: later}); !errors.Is(err, ErrExpired) {
		t.Fatalf("after its expiry: %v, want ErrExpired", err)
	}
	tests := []struct {
		name     string
		validFor time.Duration
		keys     []ed25519.PrivateKey
		trusted  *Keyring
		err      string
	}{
		{"too short", 10 * time.Minute, []ed25519.PrivateKey{tr.key}, trusted, "too short"},
		{"no key", 0, nil, trusted, "no signing key"},
		{"signed by an untrusted key", 0, []ed25519.PrivateKey{tr.key}, NewKeyring(pubOf(testKey(t))), "signed by no trusted key"},
		{"a year", 365 * 24 * time.Hour, []ed25519.PrivateKey{tr.key}, trusted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			r, err := Resign(tr.dir, "stable", tt.keys, tt.trusted, tt.validFor)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if b, _ := readChannelFiles(t, tr.dir, "stable"); !bytes.Equal(b, body) {
					t.Fatal("a refused resign changed the channel")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, s := readChannelFiles(t, tr.dir, "stable")
			got, err := Verify(b, s, Policy{Keys: trusted, Now: later})
			if err != nil {
				t.Fatalf("re-signed channel: %v", err)
			}
			if got.Version != m.Version || !got.Released.Equal(m.Released) || !reflect.DeepEqual(got.Payloads, m.Payloads) || got.Expires != r.Expires {
				t.Fatalf("re-signed manifest changed the release: %+v, was %+v", got, m)
			}
			if got.Expires.Before(before.Add(tt.validFor).Truncate(time.Second)) {
				t.Fatalf("expires %s, want %s from now", got.Expires, tt.validFor)
			}
		})
	}
}

func readChannelFiles(t *testing.T, dir, channel string) (body, sig []byte) {
	t.Helper()
	p := filepath.Join(dir, "channels", channel+".json")
	body, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if sig, err = os.ReadFile(p + ".sig"); err != nil {
		t.Fatal(err)
	}
	return body, sig
}

func TestPublishValidity(t *testing.T) {
	tests := []struct {
		name     string
		released time.Time
		validFor time.Duration
		err      string
	}{
		{"default", time.Time{}, 0, ""},
		{"a week", time.Time{}, 7 * 24 * time.Hour, ""},
		{"expired already", time.Now().AddDate(-1, 0, 0), 0, "would be expired already"},
		{"too short", time.Time{}, time.Minute, "too short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			m, err := Publish(dir, Release{Channel: "stable", Version: "1.0.0", Platform: "linux/amd64", Released: tt.released, ValidFor: tt.validFor,
				Payloads: []PayloadSource{bytesSource(PayloadUSR, "usr", []byte("usr"))}}, []ed25519.PrivateKey{testKey(t)}, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if ents, _ := os.ReadDir(filepath.Join(dir, "channels")); len(ents) != 0 {
					t.Fatalf("refused release wrote %v", ents)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.validFor
			if want == 0 {
				want = DefaultValidity
			}
			if d := m.Expires.Sub(m.Released); d != want {
				t.Fatalf("valid for %s, want %s", d, want)
			}
		})
	}
}
