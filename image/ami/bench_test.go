package ami

import (
	"context"
	"fmt"
	"testing"

	"github.com/pith-os/pith/image/ami/amitest"
	"github.com/pith-os/pith/image/manifest"
)

// BenchmarkPutImage measures the multipart upload of a 64 MiB image to the
// in-memory S3 server on 127.0.0.1 (client, signing, checksums and server).
func BenchmarkPutImage(b *testing.B) {
	amitest.AWSEnv(b, true)
	s := amitest.NewS3(b, "pith-amis")
	img := amitest.GPTImage(b, 64<<20, true, true)
	c, err := NewClients(context.Background(), "", Endpoints{S3: s.URL})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(64 << 20)
	b.ResetTimer()
	for i := range b.N {
		key := fmt.Sprintf("k%d", i)
		if err := putImage(context.Background(), c.S3, "pith-amis", key, img, "x", 8<<20, nil, nil); err != nil {
			b.Fatal(err)
		}
		if err := deleteObject(context.Background(), c.S3, "pith-amis", key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckAndHash measures what Upload does before any network call
// on a 4 GiB sparse image: the GPT check and the SHA-256 (holes hashed as
// zeros without reading them).
func BenchmarkCheckAndHash(b *testing.B) {
	img := amitest.GPTImage(b, 4<<30, true, true)
	b.SetBytes(4 << 30)
	b.ResetTimer()
	for range b.N {
		if _, err := CheckImage(img, "uefi-preferred"); err != nil {
			b.Fatal(err)
		}
		if _, _, err := manifest.HashFile(img); err != nil {
			b.Fatal(err)
		}
	}
}
