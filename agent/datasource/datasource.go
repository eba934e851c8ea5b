// Package datasource finds a node's user-data and metadata.
//
// Probe order (first source that is present wins):
//
//  1. a local file given with --from-file (Config.FromFile);
//  2. a URL on the kernel line: ignition.config.url= (Ignition's own
//     argument: an Ignition config, fetched as Ignition does, which the
//     initramfs read too), then pith.config.url= or cloud-config-url=;
//  3. the source of the platform named on the kernel line (pith.platform=,
//     also coreos.oem.id= / flatcar.oem.id=): qemu -> fw_cfg,
//     openstack/configdrive -> config drive, ec2/aws -> EC2,
//     digitalocean -> DigitalOcean, vagrant -> Vagrant file;
//  4. the local sources, which cost nothing to probe: QEMU fw_cfg, config
//     drive, Vagrant file;
//  5. the network sources, each with short timeouts: EC2 instance
//     metadata (IMDSv2, then v1), DigitalOcean metadata. When the platform
//     is known, the network sources of other platforms are skipped so a
//     QEMU or Vagrant boot never waits on 169.254.169.254;
//  6. the OEM partition's config.ign (an Ignition config pith install
//     wrote, as flatcar-install -i): last, so a datasource of the machine
//     it runs on (fw_cfg, a config drive, a cloud's metadata: a disk
//     installed on a cloud VM) still gives that machine's user-data; on
//     bare metal none is present and config.ign is the config.
//
// A source that is absent returns ErrNotFound and the next is tried; a
// source that is present but broken (an explicit URL that fails, a config
// drive without user_data) is an error, because guessing on would apply
// the wrong config; an ignition.config.url's is an *IgnitionError, on
// which first boot stops.
package datasource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/configurl"
)

// ErrNotFound means the source does not exist on this machine.
var ErrNotFound = errors.New("datasource not present")

// Metadata is what a datasource says about the machine. Its fields are
// fwcfg.Meta's, the fw_cfg meta-data's JSON, which FwCfg converts to it.
type Metadata struct {
	Hostname      string   `json:"hostname,omitempty"`
	InstanceID    string   `json:"instance_id,omitempty"`
	PrivateIPv4   net.IP   `json:"private_ipv4,omitempty"`
	PublicIPv4    net.IP   `json:"public_ipv4,omitempty"`
	PrivateIPv6   net.IP   `json:"private_ipv6,omitempty"`
	PublicIPv6    net.IP   `json:"public_ipv6,omitempty"`
	SSHPublicKeys []string `json:"ssh_public_keys,omitempty"`
}

// Addresses returns the values for $private_ipv4 and friends.
func (m Metadata) Addresses() cloudconfig.Addresses {
	return cloudconfig.Addresses{PrivateIPv4: m.PrivateIPv4, PublicIPv4: m.PublicIPv4, PrivateIPv6: m.PrivateIPv6, PublicIPv6: m.PublicIPv6}
}

// Result is what a source found. UserData may be empty (a platform with
// no user-data configured): the node still boots with its metadata.
type Result struct {
	Source   string   `json:"source"`
	UserData []byte   `json:"-"`
	Metadata Metadata `json:"metadata"`
	// Note says how the data was read, for the log (e.g. the fw_cfg path
	// and time).
	Note string `json:"-"`
}

// Source is one place user-data can come from.
type Source interface {
	Name() string
	// Fetch returns ErrNotFound (possibly wrapped) when the source is absent.
	Fetch(ctx context.Context) (*Result, error)
}

// DefaultMetadataURL is the link-local metadata service of EC2 and
// DigitalOcean.
const DefaultMetadataURL = "http://169.254.169.254"

// Config says where to look. The zero value (after defaults) probes a real
// machine; tests point Root at a temp dir and MetadataURL at 127.0.0.1.
type Config struct {
	// Root prefixes every local path (fw_cfg, /proc/cmdline, /dev, the
	// Vagrant file). Default "/".
	Root string
	// MetadataURL is the base URL of the EC2 and DigitalOcean metadata
	// services. Default DefaultMetadataURL.
	MetadataURL string
	// FromFile, when set, is the user-data file to use (pithd --from-file).
	FromFile string
	// Cmdline overrides the kernel command line read from Root/proc/cmdline.
	Cmdline *string
	// ConfigDrives are block devices or image files to try for a config
	// drive. Default: /dev/disk/by-label/config-2 (and CONFIG-2), /dev/sr0.
	ConfigDrives []string
	// RequestTimeout bounds each HTTP request (default 2s) and Attempts the
	// tries per request of a network source (default 3).
	RequestTimeout time.Duration
	Attempts       int
	// Client is the HTTP client (default: one without proxies).
	Client *http.Client
	// IgnitionURLWait bounds the retries of an ignition.config.url that
	// does not answer (default configurl.DefaultWait, Ignition's).
	IgnitionURLWait time.Duration
}

func (c Config) withDefaults() Config {
	if c.Root == "" {
		c.Root = "/"
	}
	if c.MetadataURL == "" {
		c.MetadataURL = DefaultMetadataURL
	}
	c.MetadataURL = strings.TrimRight(c.MetadataURL, "/")
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 2 * time.Second
	}
	if c.Attempts == 0 {
		c.Attempts = 3
	}
	if c.Client == nil {
		// No proxy from the environment: metadata is link-local.
		c.Client = &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: c.RequestTimeout}).DialContext}}
	}
	if c.ConfigDrives == nil {
		c.ConfigDrives = []string{
			c.path("/dev/disk/by-label/config-2"),
			c.path("/dev/disk/by-label/CONFIG-2"),
			c.path("/dev/sr0"),
		}
	}
	return c
}

func (c Config) path(p string) string { return filepath.Join(c.Root, p) }

func (c Config) cmdline() string {
	if c.Cmdline != nil {
		return *c.Cmdline
	}
	b, _ := os.ReadFile(c.path("/proc/cmdline"))
	return string(b)
}

// cmdlineValue returns the value of the last key=value on the kernel line
// with one of the given keys (the last wins, as in the kernel).
func cmdlineValue(cmdline string, keys ...string) string {
	val := ""
	for _, f := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				val = v
			}
		}
	}
	return val
}

// Platform returns the platform id from the kernel line, or "".
func (c Config) Platform() string {
	return cmdlineValue(c.cmdline(), "pith.platform", "coreos.oem.id", "flatcar.oem.id", "ignition.platform.id")
}

// Sources returns the sources in probe order (see the package comment).
func Sources(cfg Config) []Source {
	cfg = cfg.withDefaults()
	var out []Source
	if cfg.FromFile != "" {
		out = append(out, &File{Path: cfg.FromFile})
	}
	if u := cmdlineValue(cfg.cmdline(), configurl.Key); u != "" {
		out = append(out, &URL{URL: u, Ignition: true, cfg: cfg})
	}
	if u := cmdlineValue(cfg.cmdline(), "pith.config.url", "cloud-config-url"); u != "" {
		out = append(out, &URL{URL: u, cfg: cfg})
	}
	fw := &FwCfg{Root: cfg.Root}
	cd := &ConfigDrive{Devices: cfg.ConfigDrives}
	vg := &Vagrant{Root: cfg.Root}
	ec2 := &EC2{cfg: cfg}
	do := &DigitalOcean{cfg: cfg}
	local := []Source{fw, cd, vg}
	network := []Source{ec2, do}
	var first Source
	switch strings.ToLower(cfg.Platform()) {
	case "qemu":
		first = fw
	case "openstack", "configdrive", "config-drive":
		first = cd
	case "ec2", "aws":
		first, network = ec2, nil
	case "digitalocean":
		first, network = do, nil
	case "vagrant", "vagrant-virtualbox", "vagrant-libvirt":
		first = vg
	}
	if first != nil {
		out = append(out, first)
		if first != ec2 && first != do {
			network = nil
		}
	}
	for _, s := range append(local, network...) {
		if s != first {
			out = append(out, s)
		}
	}
	// Last (see the package comment): the initramfs, too, reads config.ign
	// only when fw_cfg, a config drive and, on pith.platform=ec2, EC2's
	// metadata service, the sources it sees (in this order, the
	// platform's first), have none.
	return append(out, &OEMIgnitionSource{Root: cfg.Root, Cmdline: cfg.Cmdline})
}

// Fetch probes the sources in order and returns the first present one.
// It returns an error wrapping ErrNotFound if no source is present (the
// node then boots without user-data).
func Fetch(ctx context.Context, cfg Config) (*Result, error) {
	var tried []string
	for _, s := range Sources(cfg) {
		r, err := s.Fetch(ctx)
		if errors.Is(err, ErrNotFound) {
			tried = append(tried, s.Name())
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("datasource %s: %w", s.Name(), err)
		}
		r.Source = s.Name()
		return r, nil
	}
	return nil, fmt.Errorf("no user-data found (tried %s): %w", strings.Join(tried, ", "), ErrNotFound)
}

// File is user-data in a local file (pithd --from-file).
type File struct{ Path string }

// Name implements Source.
func (f *File) Name() string { return "file" }

// Fetch implements Source. The file was named explicitly, so a missing
// file is an error, not ErrNotFound.
func (f *File) Fetch(context.Context) (*Result, error) {
	b, err := readLimited(f.Path)
	if err != nil {
		return nil, err
	}
	return &Result{UserData: b}, nil
}

// readLimited reads a file, refusing more than cloudconfig.MaxSize.
func readLimited(p string) ([]byte, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return readAllLimited(fh, p)
}
