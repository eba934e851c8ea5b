package install

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/manifest"
)

// SignatureSuffix names an image manifest's detached signature file
// (pith.manifest.json.sig), in the format of a channel's signature file.
const SignatureSuffix = ".sig"

// signingContext separates image-manifest signatures from channel-manifest
// ones made with the same release key: a signed channel manifest can never
// pass for a signed image manifest, nor the reverse.
const signingContext = "pith-image-manifest-v1\x00"

// maxManifest bounds a manifest or signature read from a URL.
const maxManifest = 4 << 20

// SignManifest signs an image manifest's bytes (pith.manifest.json) with
// each key and returns the signature file to store beside it.
func SignManifest(body []byte, keys ...ed25519.PrivateKey) ([]byte, error) {
	if len(keys) == 0 {
		return nil, errors.New("sign: no key")
	}
	sum := sha256.Sum256(body)
	sf := channels.SignatureFile{Schema: channels.SchemaVersion, ManifestSHA256: hex.EncodeToString(sum[:])}
	msg := append([]byte(signingContext), body...)
	for _, k := range keys {
		sf.Signatures = append(sf.Signatures, channels.Signature{
			KeyID:     channels.KeyID(k.Public().(ed25519.PublicKey)),
			Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(k, msg)),
		})
	}
	b, err := json.MarshalIndent(sf, "", "  ")
	return append(b, '\n'), err
}

// ErrSignature is wrapped by every signature failure.
var ErrSignature = errors.New("image manifest signature")

// VerifyManifest checks that a trusted key signed body; it returns that
// key's id.
func VerifyManifest(body, sig []byte, keys *channels.Keyring) (string, error) {
	var sf channels.SignatureFile
	dec := json.NewDecoder(bytes.NewReader(sig))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return "", fmt.Errorf("%w: unreadable signature file (%v)", ErrSignature, err)
	}
	if keys.Len() == 0 {
		return "", fmt.Errorf("%w: no trusted key to check it with: pass --key FILE (pith keygen's pith-release.pub)", ErrSignature)
	}
	msg := append([]byte(signingContext), body...)
	for _, s := range sf.Signatures {
		pub, ok := keys.Lookup(s.KeyID)
		if !ok {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(s.Signature)
		if err == nil && len(raw) == ed25519.SignatureSize && ed25519.Verify(pub, msg, raw) {
			return s.KeyID, nil
		}
		return "", fmt.Errorf("%w: bad signature by trusted key %s (the manifest was changed after signing)", ErrSignature, s.KeyID)
	}
	return "", fmt.Errorf("%w: signed by no trusted key (trusted: %s)", ErrSignature, strings.Join(keys.IDs(), ", "))
}

// isURL reports whether src is an http(s) URL rather than a path.
func isURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// sibling names the file called name in the same directory (or URL
// directory) as src.
func sibling(src, name string) string {
	if isURL(src) {
		u, err := url.Parse(src)
		if err != nil {
			return name
		}
		u.Path = path.Join(path.Dir(u.Path), name)
		u.RawQuery = ""
		return u.String()
	}
	return filepath.Join(filepath.Dir(src), name)
}

// errMissing marks a source that does not exist (a 404 or no such file),
// so an absent optional signature can be told from a failing one.
var errMissing = errors.New("not found")

// readSmall reads a manifest-sized file or URL.
func readSmall(ctx context.Context, client *http.Client, src string) ([]byte, error) {
	var r io.ReadCloser
	if isURL(src) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusNotFound {
			resp.Body.Close()
			return nil, fmt.Errorf("%s: %w", src, errMissing)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("%s: %s", src, resp.Status)
		}
		r = resp.Body
	} else {
		f, err := os.Open(src)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", src, errMissing)
		}
		if err != nil {
			return nil, err
		}
		r = f
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%s: larger than %d bytes: not a manifest", src, maxManifest)
	}
	return b, nil
}

// checked is a manifest that passed the signature policy, and the raw
// image artifact it describes.
type checked struct {
	m        *manifest.Manifest
	image    manifest.Artifact
	signedBy string // key id, or "" when unsigned
}

// loadManifest reads and checks the image manifest: its signature (when a
// signature file exists, or always under requireSig), its schema, and the
// raw image entry.
func loadManifest(ctx context.Context, client *http.Client, src, sigSrc string, keys *channels.Keyring, requireSig bool) (*checked, error) {
	body, err := readSmall(ctx, client, src)
	if err != nil {
		return nil, fmt.Errorf("image manifest: %w (pass --manifest)", err)
	}
	c := &checked{}
	sig, err := readSmall(ctx, client, sigSrc)
	switch {
	case errors.Is(err, errMissing) && requireSig:
		return nil, fmt.Errorf("%w: %s is missing and --require-signature is set", ErrSignature, sigSrc)
	case errors.Is(err, errMissing):
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	default:
		if c.signedBy, err = VerifyManifest(body, sig, keys); err != nil {
			return nil, err
		}
	}
	var m manifest.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("image manifest %s: %v", src, err)
	}
	if m.Schema != manifest.SchemaVersion {
		return nil, fmt.Errorf("image manifest %s: schema %d, this pith reads %d", src, m.Schema, manifest.SchemaVersion)
	}
	for _, a := range m.Artifacts {
		if a.Format == "raw" {
			c.image = a
		}
	}
	if c.image.Name == "" || len(c.image.SHA256) != 64 || c.image.Size <= 0 {
		return nil, fmt.Errorf("image manifest %s lists no raw image with its size and SHA-256", src)
	}
	c.m = &m
	return c, nil
}
