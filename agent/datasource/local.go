package datasource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/fwcfg"
)

func readAllLimited(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, cloudconfig.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > cloudconfig.MaxSize {
		return nil, fmt.Errorf("%s is larger than %d MiB", what, cloudconfig.MaxSize>>20)
	}
	return b, nil
}

// FwCfgDir is where the kernel's qemu_fw_cfg driver shows Pith's entries;
// QEMU sets them with -fw_cfg name=opt/org.pith/user-data,file=...
const FwCfgDir = fwcfg.Dir

// FwCfg reads QEMU's fw_cfg entries opt/org.pith/user-data and, optionally,
// opt/org.pith/meta-data (JSON in Metadata's shape, so a test harness can
// hand the guest its addresses).
type FwCfg struct{ Root string }

// Name implements Source.
func (f *FwCfg) Name() string { return "qemu-fw-cfg" }

// Fetch implements Source.
func (f *FwCfg) Fetch(context.Context) (*Result, error) {
	start := time.Now()
	ud, how, err := fwcfg.Read(f.Root, fwcfg.UserData, cloudconfig.MaxSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	r := &Result{UserData: ud, Note: fmt.Sprintf("read through %s in %s", how, time.Since(start).Round(time.Millisecond))}
	// The initramfs checks the meta-data by the same rule before storage.
	md, err := fwcfg.ReadMetaData(f.Root, cloudconfig.MaxSize)
	if err != nil {
		return nil, err
	}
	r.Metadata = Metadata(md)
	return r, nil
}

// VagrantFile is where Pith's Vagrantfile provisioner places user-data.
const VagrantFile = "/var/lib/pith-vagrant/user-data"

// Vagrant reads the file Pith's Vagrantfile uploads. Vagrant's private
// network address, when the Vagrantfile writes it next to the user-data
// (file "private-ipv4"), becomes $private_ipv4.
type Vagrant struct{ Root string }

// Name implements Source.
func (v *Vagrant) Name() string { return "vagrant" }

// Fetch implements Source.
func (v *Vagrant) Fetch(context.Context) (*Result, error) {
	p := filepath.Join(v.Root, VagrantFile)
	ud, err := readLimited(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	r := &Result{UserData: ud}
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(p), "private-ipv4")); err == nil {
		r.Metadata.PrivateIPv4 = parseIP(string(b))
	}
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(p), "public-ipv4")); err == nil {
		r.Metadata.PublicIPv4 = parseIP(string(b))
	}
	return r, nil
}

func parseIP(s string) net.IP {
	return net.ParseIP(trimSpace(s))
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\n') {
		s = s[1:]
	}
	return s
}
