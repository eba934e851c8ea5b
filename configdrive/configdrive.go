// Package configdrive reads an OpenStack config drive: an ISO 9660 or
// FAT32 filesystem labelled config-2 holding openstack/latest/user_data
// and openstack/latest/meta_data.json, straight from its block device or
// image file with go-diskfs, nothing mounted. pithd's datasource and
// pith-init (the first boot's storage and kernel arguments) share it, so
// both find the same drive and the same user-data.
package configdrive

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
)

// The filesystem label and the files Read looks for.
const (
	Label    = "config-2"
	UserData = "openstack/latest/user_data"
	MetaData = "openstack/latest/meta_data.json"
)

// ErrNotFound means the device holds no config-2 filesystem.
var ErrNotFound = errors.New("no config-2 filesystem")

// Drive is what a config drive holds; nil when the file is absent (a
// drive without user-data is legal: metadata only).
type Drive struct {
	UserData, MetaData []byte
}

// Read reads the config drive on dev, refusing a file over max bytes. It
// returns ErrNotFound when dev cannot be opened or holds no filesystem
// labelled config-2 (case aside).
func Read(dev string, max int64) (*Drive, error) {
	d, err := diskfs.Open(dev, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, ErrNotFound // no medium in the drive, no access: absent
	}
	defer d.Close()
	fsys, err := d.GetFilesystem(0)
	if err != nil {
		return nil, ErrNotFound
	}
	// ISO 9660 pads the volume id with spaces (go-diskfs with NULs).
	if !strings.EqualFold(strings.Trim(fsys.Label(), " \x00"), Label) {
		return nil, ErrNotFound
	}
	r := &Drive{}
	for _, f := range []struct {
		name string
		into *[]byte
	}{{UserData, &r.UserData}, {MetaData, &r.MetaData}} {
		b, err := readFile(fsys, f.name, max)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", f.name, err)
		default:
			*f.into = b
		}
	}
	return r, nil
}

func readFile(fsys filesystem.FileSystem, name string, max int64) ([]byte, error) {
	// go-diskfs filesystems differ on a leading slash (iso9660 refuses
	// one, fat32 wants one); try both, and a file absent either way is
	// absent, not the other form's "invalid argument".
	f, err := fsys.Open(name)
	if err != nil && !notExist(err) {
		var err2 error
		if f, err2 = fsys.Open("/" + name); err2 == nil || notExist(err2) {
			err = err2
		}
	}
	if err != nil {
		if notExist(err) {
			return nil, fs.ErrNotExist
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d MiB", name, max>>20)
	}
	return b, nil
}

func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), "not exist") || strings.Contains(err.Error(), "not found")
}

// Meta is what Pith reads of meta_data.json: OpenStack's uuid, hostname
// and public_keys, and the addresses simple config-drive builders (and
// Pith's test harness) add for substitution.
type Meta struct {
	UUID        string            `json:"uuid"`
	Hostname    string            `json:"hostname"`
	PublicKeys  map[string]string `json:"public_keys"`
	PrivateIPv4 string            `json:"private_ipv4"`
	PublicIPv4  string            `json:"public_ipv4"`
	PrivateIPv6 string            `json:"private_ipv6"`
	PublicIPv6  string            `json:"public_ipv6"`
}

// ParseMeta parses meta_data.json: pithd's rule, by which the initramfs
// also refuses a drive before it applies storage from it.
func ParseMeta(b []byte) (*Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %v", MetaData, err)
	}
	return &m, nil
}

// Probe reports whether dev starts like an ISO 9660 or FAT filesystem,
// the two a config drive uses: a cheap look (two small reads) before
// Read, for a caller that tries every block device.
func Probe(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 512)
	// ISO 9660: the primary volume descriptor at 32 KiB, "\x01CD001".
	if n, _ := f.ReadAt(b[:6], 32768); n == 6 && string(b[:6]) == "\x01CD001" {
		return true
	}
	// FAT: the boot sector's signature and its type string, FAT12/16's
	// at 0x36, FAT32's at 0x52.
	if n, _ := f.ReadAt(b, 0); n < 512 || b[510] != 0x55 || b[511] != 0xAA {
		return false
	}
	return string(b[0x36:0x39]) == "FAT" || string(b[0x52:0x57]) == "FAT32"
}
