package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/pith-os/pith/image/manifest"
)

// ErrImage is wrapped when the image's bytes are not those the manifest
// names.
var ErrImage = errors.New("image does not match its manifest")

// staged is a local, verified copy of the raw image.
type staged struct {
	path    string
	cleanup func()
}

// stage returns a local raw image whose SHA-256 and size are the
// manifest's. A local raw file is hashed in place (holes cost no reads);
// a URL or a zstd-compressed image (NAME.zst) is first written, sparse,
// into a temporary file in tmpDir while it is hashed.
func stage(ctx context.Context, client *http.Client, src, tmpDir string, want manifest.Artifact, progress func(done, total int64)) (*staged, error) {
	if !isURL(src) && !strings.HasSuffix(src, ".zst") {
		size, sum, err := manifest.HashFile(src)
		if err != nil {
			return nil, fmt.Errorf("image %s: %v", src, err)
		}
		if err := compare(src, want, size, sum); err != nil {
			return nil, err
		}
		return &staged{path: src, cleanup: func() {}}, nil
	}
	r, err := openSource(ctx, client, src)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var in io.Reader = r
	if strings.HasSuffix(src, ".zst") {
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("image %s: %v", src, err)
		}
		defer zr.Close()
		in = zr
	}
	tmp, err := os.CreateTemp(tmpDir, ".pith-install-*.img")
	if err != nil {
		return nil, fmt.Errorf("staging the image: %v (pass --tmp DIR)", err)
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	h := sha256.New()
	// One byte more than the manifest's size reveals a longer image.
	n, err := copySparse(ctx, tmp, io.TeeReader(io.LimitReader(in, want.Size+1), h), want.Size, progress)
	if err == nil {
		err = tmp.Truncate(n)
	}
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("image %s: %v", src, err)
	}
	if err := compare(src, want, n, hex.EncodeToString(h.Sum(nil))); err != nil {
		cleanup()
		return nil, err
	}
	return &staged{path: tmp.Name(), cleanup: cleanup}, nil
}

func compare(src string, want manifest.Artifact, size int64, sum string) error {
	if size != want.Size {
		return fmt.Errorf("%w: %s is %d bytes, the manifest's %s %d", ErrImage, src, size, want.Name, want.Size)
	}
	if sum != want.SHA256 {
		return fmt.Errorf("%w: %s has SHA-256 %s..., the manifest's %s %s... (corrupt or another build)", ErrImage, src, sum[:16], want.Name, want.SHA256[:16])
	}
	return nil
}

func openSource(ctx context.Context, client *http.Client, src string) (io.ReadCloser, error) {
	if !isURL(src) {
		f, err := os.Open(src)
		if err != nil {
			return nil, fmt.Errorf("image: %v", err)
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("image: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("image %s: %s", src, resp.Status)
	}
	return resp.Body, nil
}
