// Package box packages a Pith qcow2 image as a Vagrant box for the libvirt
// provider (`pith box`): a tar.gz holding metadata.json, box.img and a
// Vagrantfile with the provider's defaults, plus a versioned box catalog
// JSON that `vagrant box add CATALOG` reads to find, check and version it.
//
// The box is reproducible: entries in a fixed order, fixed owners, modes
// and mtimes (the image's SOURCE_DATE_EPOCH), and a gzip header without a
// name or time, so the same image gives the same box bytes and checksum.
package box

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"archive/tar"

	"github.com/klauspost/compress/gzip"

	"github.com/pith-os/pith/image/manifest"
)

// Provider is the only provider the box is made for.
const Provider = "libvirt"

// DefaultName is the box name in the catalog (what `vagrant box list` shows
// and `config.vm.box` names).
const DefaultName = "pith"

// GiB is what Vagrant's libvirt provider counts virtual_size in.
const GiB = 1 << 30

// Options say what to package.
type Options struct {
	Image   string // qcow2 image (pith.qcow2)
	Out     string // box file to write (pith.box)
	Catalog string // catalog JSON to create or update; default Out without .box + ".json"
	Name    string // box name in the catalog; default DefaultName
	Version string // box version (X.Y.Z); default the image manifest's version
	// URL is where `vagrant box add` fetches the box from, as written in
	// the catalog; default file:// of Out's absolute path.
	URL string
	// Epoch is the mtime of every entry; default the manifest's
	// source_date_epoch, else 0.
	Epoch int64
	// Platform is the image's platform from its manifest ("" if unknown);
	// Build fills it in.
	Platform string
	// OEM puts the box's cloud-config (OEMCloudConfig: the vagrant user)
	// on the image's OEM partition, where pithd applies it on first boot.
	// box.img is then a copy of Image with that partition rebuilt.
	OEM bool
}

// Result describes a written box.
type Result struct {
	Box, Catalog string
	Size         int64
	SHA256       string
	VirtualSize  int64 // bytes, from the qcow2 header
	VirtualGB    int64 // metadata.json's virtual_size
	Version      string
	Platform     string
}

// Metadata is the box's metadata.json for the libvirt provider.
type Metadata struct {
	Provider    string `json:"provider"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual_size"` // whole GiB, rounded up
}

// NewMetadata returns the metadata for a qcow2 image of virtualSize bytes.
func NewMetadata(virtualSize int64) Metadata {
	return Metadata{Provider: Provider, Format: "qcow2", VirtualSize: (virtualSize + GiB - 1) / GiB}
}

// qcow2 header: magic "QFI\xfb", version (4 bytes), backing file offset (8)
// and size (4), cluster bits (4), then the virtual size (8), big endian.
var qcowMagic = []byte{'Q', 'F', 'I', 0xfb}

// QcowVirtualSize reads the virtual disk size from a qcow2 header. Other
// formats are refused: libvirt's box format is qcow2.
func QcowVirtualSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("image %s: %w (build one with pith build, it writes pith.qcow2)", path, errors.Unwrap(err))
	}
	defer f.Close()
	var h [32]byte
	if _, err := io.ReadFull(f, h[:]); err != nil || string(h[:4]) != string(qcowMagic) {
		return 0, fmt.Errorf("image %s is not a qcow2 file: pass pith.qcow2 (or convert with qemu-img convert -O qcow2)", path)
	}
	if v := binary.BigEndian.Uint32(h[4:8]); v != 2 && v != 3 {
		return 0, fmt.Errorf("image %s: qcow2 version %d is not supported (want 2 or 3)", path, v)
	}
	size := int64(binary.BigEndian.Uint64(h[24:32]))
	if size <= 0 {
		return 0, fmt.Errorf("image %s: qcow2 header gives a virtual size of %d bytes", path, size)
	}
	return size, nil
}

// reVersion is what Vagrant accepts as a box version.
var reVersion = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`)

// CheckVersion rejects versions `vagrant box add` would refuse.
func CheckVersion(v string) error {
	if !reVersion.MatchString(v) {
		return fmt.Errorf("box version %q: Vagrant wants numbers separated by dots (e.g. 0.1.0): pass --version", v)
	}
	return nil
}

// readManifest returns the manifest beside the image, or nil if none.
func readManifest(image string) (*manifest.Manifest, error) {
	p := filepath.Join(filepath.Dir(image), manifest.FileName)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m manifest.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	return &m, nil
}

// entry is one file in the box.
type entry struct {
	name string
	data []byte // small files
	path string // or a file to copy (box.img)
	size int64
}

// Build writes the box and updates the catalog. The box is written under a
// temporary name and renamed when complete; the catalog likewise.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Image == "" || o.Out == "" {
		return nil, errors.New("box: both --image (a pith.qcow2) and --out (the .box to write) are needed")
	}
	vsize, err := QcowVirtualSize(o.Image)
	if err != nil {
		return nil, err
	}
	m, err := readManifest(o.Image)
	if err != nil {
		return nil, err
	}
	if m != nil {
		o.Platform = m.Platform
		if o.Version == "" {
			o.Version = m.Version
		}
		if o.Epoch == 0 {
			o.Epoch = m.Inputs.SourceDateEpoch
		}
	}
	if o.Version == "" {
		return nil, fmt.Errorf("no %s beside %s to take the version from: pass --version", manifest.FileName, o.Image)
	}
	if err := CheckVersion(o.Version); err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Catalog == "" {
		o.Catalog = CatalogPath(o.Out)
	}
	abs, err := filepath.Abs(o.Out)
	if err != nil {
		return nil, err
	}
	if o.URL == "" {
		o.URL = (&url.URL{Scheme: "file", Path: abs}).String()
	}
	boxImg := o.Image
	if o.OEM {
		dir := filepath.Dir(abs)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create %s: %v: choose another --out", dir, errors.Unwrap(err))
		}
		tmp, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".img-")
		if err != nil {
			return nil, fmt.Errorf("cannot write in %s: %v: choose another --out", dir, errors.Unwrap(err))
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		if err := AddOEMFiles(ctx, o.Image, tmp.Name(), map[string]string{OEMConfigPath: OEMCloudConfig()}, o.Epoch); err != nil {
			return nil, err
		}
		boxImg = tmp.Name()
	}
	st, err := os.Stat(boxImg)
	if err != nil {
		return nil, err
	}
	md, err := json.MarshalIndent(NewMetadata(vsize), "", "  ")
	if err != nil {
		return nil, err
	}
	entries := []entry{
		{name: "Vagrantfile", data: []byte(Vagrantfile())},
		{name: "box.img", path: boxImg, size: st.Size()},
		{name: "metadata.json", data: append(md, '\n')},
	}
	sum, size, err := writeAtomic(o.Out, func(w io.Writer) error { return WriteTar(ctx, w, entries, o.Epoch) })
	if err != nil {
		return nil, err
	}
	cat, err := ReadCatalog(o.Catalog)
	if err != nil {
		return nil, err
	}
	if cat.Name == "" {
		cat.Name = o.Name
	}
	if cat.Name != o.Name {
		return nil, fmt.Errorf("catalog %s is for box %q, not %q: pass --name %s or another --catalog", o.Catalog, cat.Name, o.Name, cat.Name)
	}
	cat.Add(o.Version, CatalogProvider{Name: Provider, URL: o.URL, ChecksumType: "sha256", Checksum: sum})
	cb, err := cat.Encode()
	if err != nil {
		return nil, err
	}
	if _, _, err := writeAtomic(o.Catalog, func(w io.Writer) error { _, err := w.Write(cb); return err }); err != nil {
		return nil, err
	}
	return &Result{Box: o.Out, Catalog: o.Catalog, Size: size, SHA256: sum, VirtualSize: vsize,
		VirtualGB: NewMetadata(vsize).VirtualSize, Version: o.Version, Platform: o.Platform}, nil
}

// CatalogPath is the default catalog beside a box: pith.box -> pith.json.
func CatalogPath(box string) string {
	ext := filepath.Ext(box)
	return box[:len(box)-len(ext)] + ".json"
}

// WriteTar writes entries as a gzip-compressed tar in their sorted order
// with root ownership, mode 0644 and mtime epoch. The gzip stream uses the
// fastest level: box.img is already compressed qcow2.
func WriteTar(ctx context.Context, w io.Writer, entries []entry, epoch int64) error {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b entry) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	// No name, no time, fixed OS byte: the header depends on nothing local.
	zw.Header = gzip.Header{OS: 255}
	tw := tar.NewWriter(zw)
	mtime := time.Unix(epoch, 0).UTC()
	for _, e := range entries {
		size := int64(len(e.data))
		if e.path != "" {
			size = e.size
		}
		// USTAR: no atime/ctime records; PAX only past its 8 GiB limit.
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Size: size, ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if size >= 1<<33 {
			hdr.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if e.path == "" {
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
			continue
		}
		if err := copyFile(ctx, tw, e.path, size); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// copyFile copies exactly size bytes of path (the size stat gave the
// header), checking ctx between chunks.
func copyFile(ctx context.Context, w io.Writer, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for n < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, err := f.Read(buf[:min(int64(len(buf)), size-n)])
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return werr
			}
			n += int64(k)
		}
		if err == io.EOF && n < size {
			return fmt.Errorf("%s shrank while being packed (%d of %d bytes): is a build writing it?", path, n, size)
		}
		if err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// writeAtomic writes path through fill into a temporary file beside it,
// hashing as it goes, and renames it into place only on success.
func writeAtomic(path string, fill func(io.Writer) error) (sum string, size int64, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, fmt.Errorf("cannot create %s: %v: choose another --out", dir, errors.Unwrap(err))
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return "", 0, fmt.Errorf("cannot write in %s: %v: choose another --out", dir, errors.Unwrap(err))
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	if err = fill(bw); err != nil {
		return "", 0, err
	}
	if err = bw.Flush(); err != nil {
		return "", 0, err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return "", 0, err
	}
	if err = tmp.Close(); err != nil {
		return "", 0, err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
