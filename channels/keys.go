package channels

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pith-os/pith/atomicfile"
)

// Key files are PEM: PKCS#8 "PRIVATE KEY" and PKIX "PUBLIC KEY", the forms
// openssl reads and writes (`openssl pkey -in pith.key -pubout`).
const (
	PrivateKeyFile = "pith-release.key"
	PublicKeyFile  = "pith-release.pub"
)

// Where a node finds the release keys it trusts. ImageKeyDir is inside
// USR (`pith build --release-key` puts keys there), so every node of an
// image trusts them without user-data, and a release rotates keys by
// shipping a USR with a new set. OEMKeyDir is the OEM partition's, for
// keys a platform adds without rebuilding the image.
const (
	ImageKeyDir = "/usr/share/pith/release-keys"
	OEMKeyDir   = "/usr/share/oem/pith/release-keys"
)

// KeyID names a public key: the first 16 bytes of SHA-256 over the raw
// 32-byte key, in hex. Signatures carry it so a verifier with several
// trusted keys (rotation) knows which one to try.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:16])
}

// GenerateKey makes a new signing key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// WriteKeyPair writes DIR/pith-release.key (0600) and DIR/pith-release.pub
// (0644). It refuses to overwrite an existing private key: losing a signing
// key strands every node that trusts only it.
func WriteKeyPair(dir string, pub ed25519.PublicKey, priv ed25519.PrivateKey) (privPath, pubPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	privPath = filepath.Join(dir, PrivateKeyFile)
	pubPath = filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists; move it away or choose another --out directory", p)
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", err
	}
	pubPEM, err := EncodePublicKey(pub)
	if err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(pubPath, pubPEM, 0o644); err != nil {
		return "", "", err
	}
	return privPath, pubPath, nil
}

// LoadPrivateKey reads a PEM PKCS#8 ed25519 private key. It refuses a key
// file that group or others can read, like ssh does.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s has mode %04o; run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PEM PRIVATE KEY; make one with `pith keygen`", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %v", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not ed25519; make one with `pith keygen`", path, k)
	}
	return priv, nil
}

// EncodePublicKey is the PEM PKIX form ParsePublicKey reads.
func EncodePublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a PEM PKIX ed25519 public key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM PUBLIC KEY")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%T is not an ed25519 key", k)
	}
	return pub, nil
}

// Keyring is the set of public keys a verifier trusts, by key id. Rotating a
// key: add the new key to the images' keyring, sign with both keys while old
// images are in the field, then drop the old key.
type Keyring struct {
	keys map[string]ed25519.PublicKey
}

// NewKeyring trusts the given keys.
func NewKeyring(keys ...ed25519.PublicKey) *Keyring {
	r := &Keyring{keys: map[string]ed25519.PublicKey{}}
	for _, k := range keys {
		r.Add(k)
	}
	return r
}

// Add trusts one more key.
func (r *Keyring) Add(k ed25519.PublicKey) {
	if r.keys == nil {
		r.keys = map[string]ed25519.PublicKey{}
	}
	r.keys[KeyID(k)] = append(ed25519.PublicKey(nil), k...)
}

// Lookup returns the trusted key with that id.
func (r *Keyring) Lookup(id string) (ed25519.PublicKey, bool) {
	if r == nil {
		return nil, false
	}
	k, ok := r.keys[id]
	return k, ok
}

// IDs lists the trusted key ids, sorted.
func (r *Keyring) IDs() []string {
	if r == nil {
		return nil
	}
	ids := make([]string, 0, len(r.keys))
	for id := range r.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Len is the number of trusted keys.
func (r *Keyring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.keys)
}

// LoadKeyring trusts every *.pub file in the given directories (ImageKeyDir
// and OEMKeyDir, typically); missing
// directories are skipped so the OEM one can be absent. A malformed key file
// is an error rather than silently ignored.
func LoadKeyring(dirs ...string) (*Keyring, error) {
	r := NewKeyring()
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".pub") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			k, err := ParsePublicKey(data)
			if err != nil {
				return nil, fmt.Errorf("trusted key %s: %v", p, err)
			}
			r.Add(k)
		}
	}
	return r, nil
}

// LoadPublicKeyFile reads one PEM public key file.
func LoadPublicKeyFile(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %v", path, err)
	}
	return k, nil
}

// writeFileAtomic replaces path with data through atomicfile (temp file,
// fsync, rename, fsync of the directory).
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.WriteFile(path, data, mode)
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
