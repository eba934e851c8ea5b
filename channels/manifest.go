package channels

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// SchemaVersion is the manifest schema this code writes and reads. A
// verifier refuses a newer schema instead of guessing at unknown fields.
const SchemaVersion = 1

// Payload names the update agent knows.
const (
	PayloadUSR    = "usr"    // the USR filesystem image for the inactive slot
	PayloadKernel = "kernel" // ESP pith/vmlinuz-{a,b}
	PayloadInitrd = "initrd" // ESP pith/initrd-{a,b}
)

// Compression of a payload file.
const (
	CompressionNone = "none"
	CompressionZstd = "zstd"
)

// Manifest describes one release on one channel.
type Manifest struct {
	Schema   int       `json:"schema"`
	Channel  string    `json:"channel"`
	Version  string    `json:"version"`
	Released time.Time `json:"released"`
	// Expires bounds how long this signed manifest is believed: past it a
	// node refuses the manifest, so a server (or a man in the middle)
	// cannot keep replaying an old channel state to hold nodes back on a
	// release with known holes. `pith release resign` renews it.
	Expires time.Time `json:"expires"`
	// MinVersion is the oldest running version that may update to this one
	// directly (e.g. after an on-disk format change); empty means any.
	MinVersion string `json:"min_version,omitempty"`
	// Platform is GOOS/GOARCH of the image, e.g. linux/amd64.
	Platform string    `json:"platform"`
	Payloads []Payload `json:"payloads"`
	// USRVerityHash is the dm-verity root hash of the USR payload when the
	// image was built with verity; the agent puts it on the slot's kernel line.
	USRVerityHash string `json:"usr_verity_hash,omitempty"`
	// SecurityUpgrades are the packages the release upgrades to a version
	// from Debian's security archive, against the channel's previous
	// release ("libssl3 3.0.20-1~deb12u2 -> 3.0.22-1~deb12u2"): nodes show
	// them for a pending release.
	SecurityUpgrades []string `json:"security_upgrades,omitempty"`
}

// Payload is one file of a release.
type Payload struct {
	Name string `json:"name"`
	// Path is relative to the repository root, e.g. 1.2.3/usr.zst.
	Path               string `json:"path"`
	Compression        string `json:"compression"`
	Size               int64  `json:"size"`
	SHA256             string `json:"sha256"`
	UncompressedSize   int64  `json:"uncompressed_size"`
	UncompressedSHA256 string `json:"uncompressed_sha256"`
	// A delta payload (usr-delta) rebuilds the USR from the previous
	// release's USR, which the node must hold on its running slot: the
	// first BaseSize bytes with SHA-256 BaseSHA256 (release BaseVersion).
	BaseVersion string `json:"base_version,omitempty"`
	BaseSize    int64  `json:"base_size,omitempty"`
	BaseSHA256  string `json:"base_sha256,omitempty"`
}

// Payload returns the payload with that name.
func (m *Manifest) Payload(name string) (Payload, bool) {
	for _, p := range m.Payloads {
		if p.Name == name {
			return p, true
		}
	}
	return Payload{}, false
}

var (
	channelNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	hexSHA256Re   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	payloadNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
)

// ValidChannelName reports whether s can name a channel (and a file).
func ValidChannelName(s string) bool { return channelNameRe.MatchString(s) }

// Validate checks the manifest's own consistency (not its signature).
func (m *Manifest) Validate() error {
	if m.Schema != SchemaVersion {
		return fmt.Errorf("schema %d, this pith reads schema %d; update pith", m.Schema, SchemaVersion)
	}
	if !ValidChannelName(m.Channel) {
		return fmt.Errorf("channel %q: use lowercase letters, digits, '.', '_' or '-'", m.Channel)
	}
	if _, err := ParseVersion(m.Version); err != nil {
		return err
	}
	if m.MinVersion != "" {
		if _, err := ParseVersion(m.MinVersion); err != nil {
			return fmt.Errorf("min_version: %w", err)
		}
	}
	if m.Released.IsZero() {
		return errors.New("released: missing release date")
	}
	if !m.Expires.After(m.Released) {
		return errors.New("expires: missing, or not after the release date; sign with pith release (--valid-for)")
	}
	if os, arch, ok := strings.Cut(m.Platform, "/"); !ok || os == "" || arch == "" {
		return fmt.Errorf("platform %q: want GOOS/GOARCH, e.g. linux/amd64", m.Platform)
	}
	if len(m.Payloads) == 0 {
		return errors.New("no payloads")
	}
	seen := map[string]bool{}
	for _, p := range m.Payloads {
		if !payloadNameRe.MatchString(p.Name) {
			return fmt.Errorf("payload name %q: use lowercase letters, digits, '_' or '-'", p.Name)
		}
		if seen[p.Name] {
			return fmt.Errorf("payload %q listed twice", p.Name)
		}
		seen[p.Name] = true
		if err := validPayloadPath(p.Path); err != nil {
			return fmt.Errorf("payload %q: %v", p.Name, err)
		}
		switch p.Compression {
		case CompressionNone, CompressionZstd:
		default:
			return fmt.Errorf("payload %q: compression %q unknown (want none or zstd)", p.Name, p.Compression)
		}
		if p.Size <= 0 || p.UncompressedSize <= 0 {
			return fmt.Errorf("payload %q: sizes must be positive", p.Name)
		}
		if !hexSHA256Re.MatchString(p.SHA256) || !hexSHA256Re.MatchString(p.UncompressedSHA256) {
			return fmt.Errorf("payload %q: sha256 must be 64 lowercase hex digits", p.Name)
		}
		if p.BaseSHA256 != "" && (!hexSHA256Re.MatchString(p.BaseSHA256) || p.BaseSize <= 0 || p.Compression != CompressionZstd) {
			return fmt.Errorf("payload %q: delta needs a base size, a base sha256 and zstd", p.Name)
		}
		if p.BaseSHA256 == "" && p.Compression == CompressionNone && (p.Size != p.UncompressedSize || p.SHA256 != p.UncompressedSHA256) {
			return fmt.Errorf("payload %q: uncompressed payload with differing sizes or hashes", p.Name)
		}
	}
	if m.USRVerityHash != "" && !hexSHA256Re.MatchString(m.USRVerityHash) {
		return fmt.Errorf("usr_verity_hash %q: want the dm-verity root hash, 64 lowercase hex digits", m.USRVerityHash)
	}
	return nil
}

// validPayloadPath accepts clean relative slash paths only: the client joins
// them to the server URL and must never be sent elsewhere.
func validPayloadPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || strings.Contains(p, "://") ||
		path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.ContainsAny(p, "?#%") {
		return fmt.Errorf("path %q must be a clean relative path inside the repository", p)
	}
	return nil
}

// Marshal encodes the manifest as the bytes that get signed.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// signingContext separates Pith manifest signatures from any other use of the
// same key: a signature over these bytes cannot be replayed as another kind
// of message.
const signingContext = "pith-release-manifest-v1\x00"

// SignatureFile is the detached signature beside a manifest
// (`stable.json.sig`). It may hold several signatures, one per key, so a
// release can be signed by an old and a new key during a key rotation.
type SignatureFile struct {
	Schema int `json:"schema"`
	// ManifestSHA256 names the manifest these signatures belong to. It is not
	// trusted (the ed25519 signatures are); the client uses it to tell a
	// manifest/signature pair caught mid-update on the server from tampering.
	ManifestSHA256 string      `json:"manifest_sha256"`
	Signatures     []Signature `json:"signatures"`
}

// Signature is one ed25519 signature.
type Signature struct {
	KeyID     string `json:"keyid"`
	Signature string `json:"sig"` // base64 (std) of 64 bytes
}

// Sign signs manifest bytes with every key given and returns the encoded
// signature file.
func Sign(manifest []byte, keys ...ed25519.PrivateKey) ([]byte, error) {
	if len(keys) == 0 {
		return nil, errors.New("sign: no key")
	}
	sum := sha256.Sum256(manifest)
	sf := SignatureFile{Schema: SchemaVersion, ManifestSHA256: hex.EncodeToString(sum[:])}
	msg := append([]byte(signingContext), manifest...)
	for _, k := range keys {
		pub := k.Public().(ed25519.PublicKey)
		sf.Signatures = append(sf.Signatures, Signature{
			KeyID:     KeyID(pub),
			Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(k, msg)),
		})
	}
	b, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Verification errors. Every error from Verify wraps exactly one of these, so
// callers can tell them apart with errors.Is and still print a clear message.
var (
	ErrMalformed     = errors.New("malformed manifest")
	ErrBadSignature  = errors.New("bad signature")
	ErrUnknownKey    = errors.New("signed by no trusted key")
	ErrNotNewer      = errors.New("not newer than the running version")
	ErrExpired       = errors.New("manifest expired")
	ErrTooOld        = errors.New("running version too old for this release")
	ErrWrongPlatform = errors.New("release for another platform")
	ErrWrongChannel  = errors.New("release for another channel")
	ErrSize          = errors.New("payload size mismatch")
	ErrHash          = errors.New("payload hash mismatch")
)

// Policy is what the verifying node knows about itself.
type Policy struct {
	Keys *Keyring
	// Channel the node follows; the signed manifest must name it, so a
	// beta manifest cannot be served as stable. Empty accepts any.
	Channel string
	// Platform of the node (GOOS/GOARCH); empty accepts any.
	Platform string
	// Running version; the release must be strictly newer (no downgrade,
	// no replay of the running release). Empty skips the check (a release
	// tool checking its own output).
	Running string
	// Now is the time expiry is checked against; zero means time.Now().
	Now time.Time
	// AllowExpired skips the expiry check, for release tools re-signing or
	// promoting a manifest (never for a node).
	AllowExpired bool
}

// Verify checks the signature file against the trusted keys, then decodes
// the manifest and checks it against the policy. Order matters: nothing in
// the manifest is looked at before a trusted signature covers it.
func Verify(manifest, sigFile []byte, pol Policy) (*Manifest, error) {
	var sf SignatureFile
	dec := json.NewDecoder(bytes.NewReader(sigFile))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return nil, fmt.Errorf("%w: signature file unreadable (%v)", ErrBadSignature, err)
	}
	if sf.Schema != SchemaVersion {
		return nil, fmt.Errorf("%w: signature schema %d, this pith reads %d", ErrBadSignature, sf.Schema, SchemaVersion)
	}
	if len(sf.Signatures) == 0 {
		return nil, fmt.Errorf("%w: signature file holds no signature", ErrBadSignature)
	}
	if pol.Keys.Len() == 0 {
		return nil, fmt.Errorf("%w: this node trusts no key; add a public key (pith build --release-key, or the OEM partition)", ErrUnknownKey)
	}
	msg := append([]byte(signingContext), manifest...)
	var known []string
	for _, s := range sf.Signatures {
		pub, ok := pol.Keys.Lookup(s.KeyID)
		if !ok {
			continue
		}
		known = append(known, s.KeyID)
		sig, err := base64.StdEncoding.DecodeString(s.Signature)
		if err != nil || len(sig) != ed25519.SignatureSize {
			continue
		}
		if ed25519.Verify(pub, msg, sig) {
			return decodeAndCheck(manifest, pol)
		}
	}
	if len(known) == 0 {
		ids := make([]string, len(sf.Signatures))
		for i, s := range sf.Signatures {
			ids[i] = s.KeyID
		}
		return nil, fmt.Errorf("%w: signed by key %s, trusted: %s", ErrUnknownKey, strings.Join(ids, ","), strings.Join(pol.Keys.IDs(), ","))
	}
	return nil, fmt.Errorf("%w: manifest does not match the signature of trusted key %s (tampered, truncated, or a stale signature)", ErrBadSignature, strings.Join(known, ","))
}

func decodeAndCheck(manifest []byte, pol Policy) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(manifest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the manifest", ErrMalformed)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if pol.Channel != "" && m.Channel != pol.Channel {
		return nil, fmt.Errorf("%w: manifest is for channel %q, this node follows %q", ErrWrongChannel, m.Channel, pol.Channel)
	}
	if !pol.AllowExpired {
		now := pol.Now
		if now.IsZero() {
			now = time.Now()
		}
		if now.After(m.Expires) {
			return nil, fmt.Errorf("%w: the manifest of %s on channel %s expired at %s (now %s); the publisher must re-sign it (pith release resign), or check this machine's clock",
				ErrExpired, m.Version, m.Channel, m.Expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
	}
	if pol.Platform != "" && m.Platform != pol.Platform {
		return nil, fmt.Errorf("%w: release %s is for %s, this node is %s", ErrWrongPlatform, m.Version, m.Platform, pol.Platform)
	}
	if pol.Running != "" {
		run, err := ParseVersion(pol.Running)
		if err != nil {
			return nil, fmt.Errorf("running version: %w", err)
		}
		rel := MustParseVersion(m.Version)
		if rel.Compare(run) <= 0 {
			return nil, fmt.Errorf("%w: release %s, running %s (downgrade or replay refused)", ErrNotNewer, m.Version, pol.Running)
		}
		if m.MinVersion != "" && run.Compare(MustParseVersion(m.MinVersion)) < 0 {
			return nil, fmt.Errorf("%w: release %s updates from %s or newer, running %s; update to an intermediate release first", ErrTooOld, m.Version, m.MinVersion, pol.Running)
		}
	}
	return &m, nil
}
