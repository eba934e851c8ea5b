package cloudconfig

import (
	"fmt"
	"strings"
	"testing"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
)

// Sums of "hello\n".
const (
	helloSHA512 = "e7c22b994c59d9cf2b48e549b1e24666636045930d3da7c1acb299d1c3b7f931f94aae41edda2c2b207a36e10f8bcb8d45223e54878f5b316e7ce3b6bc019629"
	helloSHA256 = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
	// "hello\n" gzip-compressed: Ignition hashes the decompressed contents.
	helloGzip = "data:;base64,H4sIAAAAAAAAA8tIzcnJ5wIAIDA6NgYAAAA="
)

func TestIgnitionHash(t *testing.T) {
	flip := func(s string) string { return "0" + s[1:] }
	for _, tc := range []struct {
		name, source, compression, hash string
		want                            []want // validation
		decodeErr                       string // DecodeIgnitionResource
	}{
		{name: "sha512 ok", source: "data:,hello%0A", hash: "sha512-" + helloSHA512},
		{name: "sha256 ok", source: "data:,hello%0A", hash: "sha256-" + helloSHA256},
		{name: "no hash", source: "data:,hello%0A"},
		{name: "gzip hashed decompressed", source: helloGzip, compression: "gzip", hash: "sha512-" + helloSHA512},
		{name: "sha512 wrong", source: "data:,hello%0A", hash: "sha512-" + flip(helloSHA512),
			want: []want{{1, 1, E, "wrong sha512 sum"}}, decodeErr: "wrong sha512 sum"},
		{name: "sha256 wrong", source: "data:,hello%0A", hash: "sha256-" + flip(helloSHA256),
			want: []want{{1, 1, E, "wrong sha256 sum"}}, decodeErr: "wrong sha256 sum"},
		{name: "gzip hash of compressed bytes is wrong", source: helloGzip, compression: "gzip", hash: "sha256-cf8187e9a5d4c53e63790f6350ea61dee4929bf6b6402c10307df634a741dd41",
			want: []want{{1, 1, E, "wrong sha256 sum"}}, decodeErr: "wrong sha256 sum"},
		{name: "not hex", source: "data:,hello%0A", hash: "sha256-" + strings.Repeat("zz", 32),
			want: []want{{1, 1, E, "not hexadecimal"}}, decodeErr: "not hexadecimal"},
		{name: "wrong length", source: "data:,hello%0A", hash: "sha256-abcd",
			want: []want{{1, 1, E, "incorrect size"}}, decodeErr: "64 hex digits"},
		{name: "unknown function", source: "data:,hello%0A", hash: "md5-b1946ac92492d2347c6235b4d2611184",
			want: []want{{1, 1, E, "unrecognized hash function"}}, decodeErr: "unsupported hash function"},
		{name: "no dash", source: "data:,hello%0A", hash: "sha512",
			want: []want{{1, 1, E, "malformed"}}, decodeErr: "malformed"},
		// Remote sources are fetched at first boot; validation checks the
		// hash's form only.
		{name: "https with hash", source: "https://10.0.2.2/a", hash: "sha512-" + helloSHA512},
		{name: "https malformed hash", source: "https://10.0.2.2/a", hash: "sha512-xyz",
			want: []want{{1, 1, E, "incorrect size"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			comp := ""
			if tc.compression != "" {
				comp = fmt.Sprintf(`,"compression":%q`, tc.compression)
			}
			ver := ""
			if tc.hash != "" {
				ver = fmt.Sprintf(`,"verification":{"hash":%q}`, tc.hash)
			}
			in := fmt.Sprintf(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/a","contents":{"source":%q%s%s}}]}}`, tc.source, comp, ver)
			rep := Validate([]byte(in))
			// Single-line JSON: compare messages, not columns.
			var errs []Entry
			for _, e := range rep.Entries {
				if e.Severity == E {
					errs = append(errs, e)
				}
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("validation errors:\n%s\nwant %d", rep.Format("in"), len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(errs[i].Message, w.msg) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i].Message, w.msg)
				}
			}
			if SourceScheme(tc.source) != "data" {
				return
			}
			src := tc.source
			r := igntypes.Resource{Source: &src}
			if tc.compression != "" {
				r.Compression = &tc.compression
			}
			if tc.hash != "" {
				r.Verification.Hash = &tc.hash
			}
			got, err := DecodeIgnitionResource(r)
			switch {
			case tc.decodeErr == "" && (err != nil || string(got) != "hello\n"):
				t.Errorf("decode = %q, %v; want hello", got, err)
			case tc.decodeErr != "" && (err == nil || !strings.Contains(err.Error(), tc.decodeErr)):
				t.Errorf("decode error %v, want %q", err, tc.decodeErr)
			}
		})
	}
}

func TestSourceScheme(t *testing.T) {
	for in, want := range map[string]string{
		"data:,x": "data", "https://a/b": "https", "HTTP://a/b": "http", "s3://b/k": "s3", "/etc/x": "", "": "",
	} {
		if got := SourceScheme(in); got != want {
			t.Errorf("SourceScheme(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactSource(t *testing.T) {
	for in, want := range map[string]string{
		"https://a.example/c.ign":                        "https://a.example/c.ign",
		"https://alice:pw0rd@a.example/c.ign":            "https://xxxxx:xxxxx@a.example/c.ign",
		"https://t0ken@a.example/c.ign":                  "https://xxxxx@a.example/c.ign",
		"https://a.example/c.ign?X-Amz-Signature=s3cr3t": "https://a.example/c.ign?X-Amz-Signature=xxxxx",
		"http://a.example/c?token=t0k&a=1#frag":          "http://a.example/c?a=xxxxx&token=xxxxx",
		"data:,secret":                                   "a data: URL",
		"s3://bucket/key":                                "s3://bucket/key",
		"http://a.example/%zz":                           "an unparsable URL",
	} {
		if got := RedactSource(in); got != want {
			t.Errorf("RedactSource(%q) = %q, want %q", in, got, want)
		}
	}
}
