package build

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/channels"
)

// releaseKey is one public key to bake into USR.
type releaseKey struct {
	path string
	pub  ed25519.PublicKey
}

// readReleaseKeys parses every key file before any long work, so a wrong
// path or a private key given by mistake fails the build at once.
func readReleaseKeys(paths []string) ([]releaseKey, error) {
	var keys []releaseKey
	seen := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("release key: %v: give the pith-release.pub that `pith keygen` wrote", err)
		}
		if strings.Contains(string(data), "PRIVATE KEY") {
			return nil, fmt.Errorf("release key %s is a private key: give the public half (pith-release.pub); the private key never goes into an image", p)
		}
		pub, err := channels.ParsePublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("release key %s: %v: give the pith-release.pub that `pith keygen` wrote", p, err)
		}
		id := channels.KeyID(pub)
		if first, dup := seen[id]; dup {
			return nil, fmt.Errorf("release key %s is the same key as %s: give it once", p, first)
		}
		seen[id] = p
		keys = append(keys, releaseKey{p, pub})
	}
	return keys, nil
}

// installReleaseKeys writes the keys into the USR tree as
// share/pith/release-keys/<key id>.pub (channels.ImageKeyDir on the node),
// timestamped epoch like the rest of the tree. It returns the key ids.
func installReleaseKeys(usrDir string, keys []releaseKey, epoch int64) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	rel, err := filepath.Rel("/usr", channels.ImageKeyDir)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(usrDir, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t := time.Unix(epoch, 0)
	var ids []string
	for _, k := range keys {
		pemBytes, err := channels.EncodePublicKey(k.pub)
		if err != nil {
			return nil, err
		}
		id := channels.KeyID(k.pub)
		p := filepath.Join(dir, id+".pub")
		if err := os.WriteFile(p, pemBytes, 0o644); err != nil {
			return nil, err
		}
		if err := os.Chtimes(p, t, t); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chtimes(d, t, t); err != nil {
			return nil, err
		}
	}
	return ids, nil
}
