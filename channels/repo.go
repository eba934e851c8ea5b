package channels

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"
)

// Repository file names.
const (
	channelsDir     = "channels"
	versionManifest = "manifest.json"
	sigSuffix       = ".sig"
)

// rawThresholdPercent: payloads zstd shrinks by less than 3% ship raw.
const rawThresholdPercent = 97

// PayloadSource is one payload to add to a release. Open may be called
// twice (compressed, then raw if compression did not pay).
type PayloadSource struct {
	Name string // usr, kernel, initrd
	File string // base file name inside DIR/<version>/, e.g. usr (".zst" is added when compressed)
	Open func() (io.ReadCloser, error)
}

// Release describes a new release to publish.
type Release struct {
	Channel       string
	Version       string
	MinVersion    string
	Platform      string
	USRVerityHash string
	Released      time.Time
	// ValidFor is how long nodes believe the signed manifest, from the
	// release date (default DefaultValidity).
	ValidFor time.Duration
	Payloads []PayloadSource
	// DeltaFrom names an earlier release in the repository; the release
	// then also carries a usr-delta payload against that release's USR,
	// for nodes running it.
	DeltaFrom string
	// SecurityUpgrades go into the signed manifest (see Manifest).
	SecurityUpgrades []string
	// Files are extra files of the release directory by name (the SBOM and
	// its diff against the previous release), written with the payloads.
	Files map[string][]byte
}

// DefaultValidity is how long a signed channel manifest stays valid unless
// the publisher says otherwise: long enough that a quiet channel needs
// re-signing only now and then, short enough that a replayed old channel
// state stops working within a release cycle or two.
const DefaultValidity = 90 * 24 * time.Hour

// expiry is the expiry of a manifest signed at from for validFor (0: the
// default).
func expiry(from time.Time, validFor time.Duration) (time.Time, error) {
	if validFor == 0 {
		validFor = DefaultValidity
	}
	if validFor < time.Hour {
		return time.Time{}, fmt.Errorf("validity %s is too short for nodes to fetch the manifest in time: use at least 1h, e.g. 720h", validFor)
	}
	e := from.Add(validFor).UTC().Truncate(time.Second)
	if !e.After(time.Now()) {
		return time.Time{}, fmt.Errorf("the manifest would be expired already (%s): give a later release date or a longer validity", e.Format(time.RFC3339))
	}
	return e, nil
}

// Publish writes DIR/<version>/ (payloads and the signed manifest, built in
// a temporary directory and renamed into place, so a failed release leaves
// nothing) and then points DIR/channels/<channel>.json at it. A version that
// exists already is refused (released files never change), and so is one not
// newer than the channel's current version.
func Publish(dir string, rel Release, keys []ed25519.PrivateKey, logf func(string, ...any)) (*Manifest, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if len(keys) == 0 {
		return nil, errors.New("release: no signing key; pass --key (make one with `pith keygen`)")
	}
	if !ValidChannelName(rel.Channel) {
		return nil, fmt.Errorf("channel %q: use lowercase letters, digits, '.', '_' or '-'", rel.Channel)
	}
	v, err := ParseVersion(rel.Version)
	if err != nil {
		return nil, fmt.Errorf("release: %w (set it with --version)", err)
	}
	if err := validPayloadPath(rel.Version); err != nil || path.Base(rel.Version) != rel.Version {
		return nil, fmt.Errorf("release: version %q cannot name a directory", rel.Version)
	}
	if err := os.MkdirAll(filepath.Join(dir, channelsDir), 0o755); err != nil {
		return nil, err
	}
	if cur, err := readChannelVersion(dir, rel.Channel); err != nil {
		return nil, err
	} else if cur != "" {
		if c := v.Compare(MustParseVersion(cur)); c <= 0 {
			return nil, fmt.Errorf("release: channel %s is at %s already; %s is not newer (bump the version)", rel.Channel, cur, rel.Version)
		}
	}
	final := filepath.Join(dir, rel.Version)
	if _, err := os.Lstat(final); err == nil {
		return nil, fmt.Errorf("release: %s exists; released versions never change (bump the version, or `pith release promote` it)", final)
	}
	tmp, err := os.MkdirTemp(dir, "."+rel.Version+".tmp")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // gone after the rename; cleans up on failure

	m := &Manifest{
		Schema: SchemaVersion, Channel: rel.Channel, Version: rel.Version,
		Released: rel.Released.UTC().Truncate(time.Second), MinVersion: rel.MinVersion,
		Platform: rel.Platform, USRVerityHash: rel.USRVerityHash, SecurityUpgrades: rel.SecurityUpgrades,
	}
	if m.Released.IsZero() {
		m.Released = time.Now().UTC().Truncate(time.Second)
	}
	if m.Expires, err = expiry(m.Released, rel.ValidFor); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	for _, ps := range rel.Payloads {
		start := time.Now()
		src, err := ps.Open()
		if err != nil {
			return nil, fmt.Errorf("payload %s: %w", ps.Name, err)
		}
		file := ps.File + ".zst"
		p, err := BuildPayload(src, filepath.Join(tmp, file))
		src.Close()
		if err != nil {
			return nil, fmt.Errorf("payload %s: %w", ps.Name, err)
		}
		if p.Size*100 > p.UncompressedSize*rawThresholdPercent {
			// Already compressed (a squashfs USR): shipping it raw costs
			// a few percent of download and saves the node a
			// decompression pass on every update.
			if src, err = ps.Open(); err != nil {
				return nil, fmt.Errorf("payload %s: %w", ps.Name, err)
			}
			os.Remove(filepath.Join(tmp, file))
			file = ps.File
			p, err = StoreRawPayload(src, filepath.Join(tmp, file))
			src.Close()
			if err != nil {
				return nil, fmt.Errorf("payload %s: %w", ps.Name, err)
			}
		}
		p.Name, p.Path = ps.Name, rel.Version+"/"+file
		m.Payloads = append(m.Payloads, p)
		secs := time.Since(start).Seconds()
		logf("payload %-7s %s: %d -> %d bytes (%.1f%%) in %.1fs, %.0f MB/s in",
			p.Name, p.Path, p.UncompressedSize, p.Size, 100*float64(p.Size)/float64(p.UncompressedSize), secs, float64(p.UncompressedSize)/1e6/secs)
	}
	for name, b := range rel.Files {
		if name != path.Base(name) || name == versionManifest || name[0] == '.' {
			return nil, fmt.Errorf("release: extra file %q must be a plain name other than %s", name, versionManifest)
		}
		if err := writeFileAtomic(filepath.Join(tmp, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	if rel.DeltaFrom != "" {
		if err := addDelta(dir, tmp, rel, m, logf); err != nil {
			return nil, err
		}
	}
	body, sig, err := signManifest(m, keys)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(tmp, versionManifest), body, 0o644); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(tmp, versionManifest+sigSuffix), sig, 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	if err := writeChannel(dir, rel.Channel, body, sig); err != nil {
		return nil, err
	}
	return m, nil
}

// addDelta builds the usr-delta payload of m against release rel.DeltaFrom
// in the repository.
func addDelta(dir, tmp string, rel Release, m *Manifest, logf func(string, ...any)) error {
	start := time.Now()
	fromDir := filepath.Join(dir, rel.DeltaFrom)
	body, err := os.ReadFile(filepath.Join(fromDir, versionManifest))
	if err != nil {
		return fmt.Errorf("delta from %s: %w", rel.DeltaFrom, err)
	}
	old, err := decodeAndCheck(body, Policy{AllowExpired: true})
	if err != nil {
		return fmt.Errorf("delta from %s: %w", rel.DeltaFrom, err)
	}
	oldUSR, ok := old.Payload(PayloadUSR)
	if !ok {
		return fmt.Errorf("delta from %s: it has no usr payload", rel.DeltaFrom)
	}
	var src PayloadSource
	for _, ps := range rel.Payloads {
		if ps.Name == PayloadUSR {
			src = ps
		}
	}
	if src.Open == nil {
		return errors.New("delta: this release has no usr payload")
	}
	bf, err := os.Open(filepath.Join(dir, filepath.FromSlash(oldUSR.Path)))
	if err != nil {
		return fmt.Errorf("delta from %s: %w", rel.DeltaFrom, err)
	}
	defer bf.Close()
	base, err := Decompress(bf, oldUSR)
	if err != nil {
		return err
	}
	defer base.Close()
	target, err := src.Open()
	if err != nil {
		return err
	}
	defer target.Close()
	file := "usr-from-" + rel.DeltaFrom + ".delta"
	p, st, err := BuildDelta(base, target, filepath.Join(tmp, file))
	if err != nil {
		return fmt.Errorf("delta from %s: %w", rel.DeltaFrom, err)
	}
	full, _ := m.Payload(PayloadUSR)
	if p.UncompressedSHA256 != full.UncompressedSHA256 {
		return fmt.Errorf("delta from %s: the USR changed while it was read", rel.DeltaFrom)
	}
	p.Path, p.BaseVersion = rel.Version+"/"+file, rel.DeltaFrom
	m.Payloads = append(m.Payloads, p)
	logf("payload %-7s %s: %d bytes against %s (%d of %d chunks reused, %.1f%% of the full usr payload) in %.1fs",
		"delta", p.Path, p.Size, rel.DeltaFrom, st.Reused, st.Chunks, 100*float64(p.Size)/float64(full.Size), time.Since(start).Seconds())
	return nil
}

// Promote points channel `to` at the release channel `from` currently has
// (or at version, when set), re-signed for `to` and valid for validFor from
// now (0: DefaultValidity). The source manifest must verify against trusted
// (which should include the signing keys); it may have expired.
func Promote(dir, from, to, version string, keys []ed25519.PrivateKey, trusted *Keyring, validFor time.Duration) (*Manifest, error) {
	if len(keys) == 0 {
		return nil, errors.New("promote: no signing key; pass --key")
	}
	if !ValidChannelName(to) {
		return nil, fmt.Errorf("channel %q: use lowercase letters, digits, '.', '_' or '-'", to)
	}
	var mPath string
	switch {
	case version != "":
		if _, err := ParseVersion(version); err != nil {
			return nil, err
		}
		mPath = filepath.Join(dir, version, versionManifest)
	case ValidChannelName(from):
		mPath = filepath.Join(dir, channelsDir, from+".json")
	default:
		return nil, fmt.Errorf("promote: give --from CHANNEL or --version V")
	}
	body, err := os.ReadFile(mPath)
	if err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}
	sig, err := os.ReadFile(mPath + sigSuffix)
	if err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}
	src, err := Verify(body, sig, Policy{Keys: trusted, AllowExpired: true})
	if err != nil {
		return nil, fmt.Errorf("promote: %s: %w", mPath, err)
	}
	exp, err := expiry(time.Now(), validFor)
	if err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}
	if cur, err := readChannelVersion(dir, to); err != nil {
		return nil, err
	} else if cur != "" && MustParseVersion(src.Version).Compare(MustParseVersion(cur)) <= 0 {
		return nil, fmt.Errorf("promote: channel %s is at %s already; %s is not newer", to, cur, src.Version)
	}
	m := *src
	m.Channel, m.Expires = to, exp
	body, sig, err = signManifest(&m, keys)
	if err != nil {
		return nil, err
	}
	if err := writeChannel(dir, to, body, sig); err != nil {
		return nil, err
	}
	return &m, nil
}

// Resign renews the expiry of the manifest a channel names: verified against
// trusted (it may have expired), given a new expiry validFor from now (0:
// DefaultValidity), signed with keys. The release itself does not change.
func Resign(dir, channel string, keys []ed25519.PrivateKey, trusted *Keyring, validFor time.Duration) (*Manifest, error) {
	if len(keys) == 0 {
		return nil, errors.New("resign: no signing key; pass --key")
	}
	if !ValidChannelName(channel) {
		return nil, fmt.Errorf("channel %q: use lowercase letters, digits, '.', '_' or '-'", channel)
	}
	p := filepath.Join(dir, channelsDir, channel+".json")
	body, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("resign: %w", err)
	}
	sig, err := os.ReadFile(p + sigSuffix)
	if err != nil {
		return nil, fmt.Errorf("resign: %w", err)
	}
	m, err := Verify(body, sig, Policy{Keys: trusted, Channel: channel, AllowExpired: true})
	if err != nil {
		return nil, fmt.Errorf("resign: %s: %w", p, err)
	}
	if m.Expires, err = expiry(time.Now(), validFor); err != nil {
		return nil, fmt.Errorf("resign: %w", err)
	}
	if body, sig, err = signManifest(m, keys); err != nil {
		return nil, err
	}
	if err := writeChannel(dir, channel, body, sig); err != nil {
		return nil, err
	}
	return m, nil
}

func signManifest(m *Manifest, keys []ed25519.PrivateKey) (body, sig []byte, err error) {
	body, err = m.Marshal()
	if err != nil {
		return nil, nil, err
	}
	sig, err = Sign(body, keys...)
	return body, sig, err
}

// writeChannel replaces a channel's manifest and signature. Each file is
// replaced atomically; a client reading between the two renames sees a
// pair whose signature names another manifest and reads again.
func writeChannel(dir, channel string, body, sig []byte) error {
	p := filepath.Join(dir, channelsDir, channel+".json")
	if err := writeFileAtomic(p+sigSuffix, sig, 0o644); err != nil {
		return err
	}
	return writeFileAtomic(p, body, 0o644)
}

// readChannelVersion returns the version a channel currently names, or "".
func readChannelVersion(dir, channel string) (string, error) {
	p := filepath.Join(dir, channelsDir, channel+".json")
	body, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	m, err := decodeAndCheck(body, Policy{AllowExpired: true})
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return m.Version, nil
}

// ChannelManifest reads a channel's manifest from a repository on disk,
// unverified (for listings).
func ChannelManifest(dir, channel string) (*Manifest, error) {
	body, err := os.ReadFile(filepath.Join(dir, channelsDir, channel+".json"))
	if err != nil {
		return nil, err
	}
	return decodeAndCheck(body, Policy{AllowExpired: true})
}
