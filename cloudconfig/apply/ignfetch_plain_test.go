package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/pith-os/pith/cloudconfig"
)

// TestIgnitionPlainHTTPWarning: the plain-HTTP warning (a Warn record
// naming the source) asks for verification.hash only when there is none,
// and says headers are sent in clear when there are some.
func TestIgnitionPlainHTTPWarning(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x")) }))
	defer srv.Close()
	sum := sha256.Sum256([]byte("x"))
	hash := "sha256-" + hex.EncodeToString(sum[:])
	tok := "Bearer t"
	for _, tc := range []struct {
		name        string
		hash        *string
		headers     igntypes.HTTPHeaders
		want, never []string
	}{
		{name: "no hash", want: []string{"can change it", "give verification.hash"}, never: []string{"httpHeaders"}},
		{name: "hash", hash: &hash, want: []string{"verification.hash is checked", "use https"}, never: []string{"give verification.hash", "can change it"}},
		{name: "hash and headers", hash: &hash, headers: igntypes.HTTPHeaders{{Name: "Authorization", Value: &tok}},
			want: []string{"verification.hash is checked", "httpHeaders"}, never: []string{"give verification.hash"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			f, err := newIgnFetcher(context.Background(), &cloudconfig.IgnitionConfig{}, nil, log)
			if err != nil {
				t.Fatal(err)
			}
			src := srv.URL + "/x"
			r := igntypes.Resource{Source: &src, HTTPHeaders: tc.headers}
			r.Verification.Hash = tc.hash
			if _, err := f.fetch(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			for _, w := range append(tc.want, `level=WARN msg="fetching over plain HTTP" source=`+src) {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, logs.String())
				}
			}
			for _, n := range tc.never {
				if strings.Contains(logs.String(), n) {
					t.Errorf("log says %q:\n%s", n, logs.String())
				}
			}
		})
	}
}
