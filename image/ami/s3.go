package ami

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/schollz/progressbar/v3"
)

// shaMeta is the object metadata key recording the image's SHA-256, so a
// re-run can tell its own finished upload from a different or partial file.
const shaMeta = "pith-sha256"

// DefaultPartSize is the multipart part size: 64 MiB keeps a 4 GiB image at
// 64 parts and memory use bounded (parts are read from the file, not buffered).
const DefaultPartSize = 64 << 20

// checkBucket fails early, with a one-line reason, when the bucket is
// missing, unreadable, or in another region than the import.
func checkBucket(ctx context.Context, c *s3.Client, bucket string) error {
	_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	if err == nil {
		return nil
	}
	var nf *types.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("bucket %s does not exist: create it (aws s3 mb s3://%s --region REGION) or pass another --bucket", bucket, bucket)
	}
	return explain("bucket "+bucket, bucket, err)
}

// objectMatches reports whether bucket/key already holds this image: same
// size and the SHA-256 recorded at upload.
func objectMatches(ctx context.Context, c *s3.Client, bucket, key string, size int64, sum string) (bool, error) {
	h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var nf *types.NotFound
		if errors.As(err, &nf) {
			return false, nil
		}
		return false, explain(fmt.Sprintf("s3://%s/%s", bucket, key), bucket, err)
	}
	return aws.ToInt64(h.ContentLength) == size && h.Metadata[shaMeta] == sum, nil
}

// putImage uploads path to bucket/key in parts, showing a progress bar on
// bars, or without bars (a log, CI) a line per tenth uploaded on logf: an
// upload of a few GiB takes minutes and must not look hung.
func putImage(ctx context.Context, c *s3.Client, bucket, key, path, sum string, partSize int64, bars io.Writer, logf func(string, ...any)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	// S3 allows 10000 parts; grow the part size for huge images.
	if min := st.Size()/int64(manager.MaxUploadParts) + 1; partSize < min {
		partSize = min
	}
	pr := &progressReader{f: f, size: st.Size(), partSize: partSize, seen: map[int64]int64{}}
	if bars == nil && logf != nil {
		start := time.Now()
		pr.tenth = func(n int, done int64) {
			logf("upload s3://%s/%s: %d%% (%d of %d MiB, %s)", bucket, key, n*10, done>>20, st.Size()>>20, time.Since(start).Round(time.Second))
		}
	}
	if bars != nil {
		pr.bar = progressbar.NewOptions64(st.Size(),
			progressbar.OptionSetWriter(bars),
			progressbar.OptionSetDescription("upload s3://"+bucket+"/"+key),
			progressbar.OptionShowBytes(true),
			progressbar.OptionThrottle(200e6),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(bars) }),
		)
	}
	// feature/s3/manager is deprecated in favour of feature/s3/transfermanager,
	// which is still v0.x (its API may change); manager's v1 API is stable.
	//lint:ignore SA1019 see above
	up := manager.NewUploader(c, func(u *manager.Uploader) {
		u.PartSize = partSize
		u.Concurrency = 4
	})
	//lint:ignore SA1019 see NewUploader
	_, err = up.Upload(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(bucket),
		Key:         aws.String(key),
		Body:        pr,
		ContentType: aws.String("application/octet-stream"),
		Metadata:    map[string]string{shaMeta: sum},
	})
	if pr.bar != nil {
		pr.bar.Finish()
	}
	if err != nil {
		err = explain(fmt.Sprintf("upload to s3://%s/%s", bucket, key), bucket, err)
		if aerr := abortUploads(ctx, c, bucket, key); aerr != nil {
			return fmt.Errorf("%v; %v", err, aerr)
		}
		return err
	}
	return nil
}

// abortUploads aborts unfinished multipart uploads of key. The uploader
// aborts its own upload on failure, but with the run's context: after an
// interrupt that call fails too and S3 would keep (and bill) the parts.
func abortUploads(ctx context.Context, c *s3.Client, bucket, key string) error {
	ctx = context.WithoutCancel(ctx)
	l, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	if err != nil {
		return fmt.Errorf("listing unfinished uploads to abort them: %v", explain("ListMultipartUploads", bucket, err))
	}
	for _, u := range l.Uploads {
		if aws.ToString(u.Key) != key {
			continue
		}
		if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId}); err != nil {
			return fmt.Errorf("upload %s of s3://%s/%s left unfinished (%v): abort it with aws s3api abort-multipart-upload", aws.ToString(u.UploadId), bucket, key, explain("AbortMultipartUpload", bucket, err))
		}
	}
	return nil
}

// deleteObject removes the temporary import object; it runs after the import
// whatever happened, on a context that a cancelled run does not cancel.
func deleteObject(ctx context.Context, c *s3.Client, bucket, key string) error {
	_, err := c.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	return explain(fmt.Sprintf("delete s3://%s/%s", bucket, key), bucket, err)
}

// progressReader gives the uploader an io.ReaderAt+Seeker (so it reads parts
// straight from the file) and counts progress as the highest offset read
// within each part: the SDK reads a part more than once (signing, checksums,
// retries), which must not count twice.
type progressReader struct {
	f        *os.File
	size     int64
	partSize int64
	bar      *progressbar.ProgressBar
	// tenth, if set, is called once per tenth of the size read (1..10).
	tenth func(n int, done int64)

	mu   sync.Mutex
	told int             // tenths reported
	seen map[int64]int64 // part index -> bytes of it read so far
	done int64
	pos  int64
}

func (p *progressReader) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.f.ReadAt(b, off)
	if n > 0 {
		p.mu.Lock()
		part := off / p.partSize
		end := off + int64(n) - part*p.partSize
		if end > p.seen[part] {
			p.done += end - p.seen[part]
			p.seen[part] = end
			if p.bar != nil {
				p.bar.Set64(p.done)
			}
			for p.tenth != nil && p.size > 0 && int(p.done*10/p.size) > p.told {
				p.told++
				p.tenth(p.told, p.done)
			}
		}
		p.mu.Unlock()
	}
	return n, err
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.ReadAt(b, p.pos)
	p.pos += int64(n)
	return n, err
}

func (p *progressReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += p.pos
	case io.SeekEnd:
		off += p.size
	}
	if off < 0 {
		return 0, errors.New("negative seek")
	}
	p.pos = off
	return off, nil
}

// Done is the number of distinct bytes read so far.
func (p *progressReader) Done() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}
