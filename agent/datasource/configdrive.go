package datasource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/configdrive"
)

// ConfigDrive reads an OpenStack-style config drive (package configdrive,
// which pith-init reads it with too): an ISO 9660 or vfat filesystem
// labelled config-2 holding openstack/latest/user_data and
// openstack/latest/meta_data.json, read straight from the block device
// (or image file), nothing mounted.
type ConfigDrive struct{ Devices []string }

// Name implements Source.
func (c *ConfigDrive) Name() string { return "config-drive" }

// Fetch implements Source.
func (c *ConfigDrive) Fetch(context.Context) (*Result, error) {
	seen := map[string]bool{}
	for _, dev := range c.Devices {
		real, err := resolve(dev)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		r, err := readConfigDrive(real)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dev, err)
		}
		return r, nil
	}
	return nil, ErrNotFound
}

func resolve(p string) (string, error) {
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	// by-label links are relative symlinks to ../../sr0 and the like.
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r, nil
	}
	return p, nil
}

// readConfigDrive returns ErrNotFound if dev holds no config-2 filesystem.
func readConfigDrive(dev string) (*Result, error) {
	d, err := configdrive.Read(dev, cloudconfig.MaxSize)
	if errors.Is(err, configdrive.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	r := &Result{UserData: d.UserData}
	if d.MetaData != nil {
		if err := parseOpenStackMeta(d.MetaData, &r.Metadata); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// parseOpenStackMeta reads the fields of meta_data.json Pith uses.
func parseOpenStackMeta(b []byte, m *Metadata) error {
	md, err := configdrive.ParseMeta(b)
	if err != nil {
		return err
	}
	m.InstanceID, m.Hostname = md.UUID, md.Hostname
	for _, k := range sortedKeys(md.PublicKeys) {
		m.SSHPublicKeys = append(m.SSHPublicKeys, strings.TrimSpace(md.PublicKeys[k]))
	}
	m.PrivateIPv4, m.PublicIPv4 = net.ParseIP(md.PrivateIPv4), net.ParseIP(md.PublicIPv4)
	m.PrivateIPv6, m.PublicIPv6 = net.ParseIP(md.PrivateIPv6), net.ParseIP(md.PublicIPv6)
	return nil
}
