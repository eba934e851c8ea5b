package pithinit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/configdrive"
	"github.com/pith-os/pith/configurl"
	"github.com/pith-os/pith/node"
)

// firstBootSource is one place the first boot's Ignition config can come
// from. Read returns the user-data and, when it found more precisely
// where, a name for the console; an error wrapping fs.ErrNotExist when the
// source is absent; errNoFirstBootConfig when it may be present but did
// not answer in time (no config, no later source); nil data with a nil
// error when the source is present without user-data (it still wins, as
// in pithd: the node has no config).
type firstBootSource struct {
	Name  string // on the console
	Pithd string // pithd's name for the same source (agent/datasource), for IgnitionSourceMarker
	Read  func() ([]byte, string, error)
	// Ignition: the source names an Ignition config (ignition.config.url),
	// so anything else, or an invalid one, stops the boot.
	Ignition bool
	// metaErr is why pithd would refuse the source despite its
	// user-data (a config drive's meta_data.json): recordSource stops
	// the boot on it before anything is applied.
	metaErr error
}

// metaDataError is a Read's error for a source present with user-data
// whose metadata pithd refuses.
type metaDataError struct{ err error }

func (e *metaDataError) Error() string { return e.err.Error() }

// pithd's datasource names (agent/datasource Source.Name) of the sources
// pith-init reads.
const (
	pithdFwCfg       = "qemu-fw-cfg"
	pithdConfigDrive = "config-drive"
	pithdOEM         = "oem-ignition"
)

// firstBootSources returns the sources the initramfs can read, in the
// order pithd probes them (agent/datasource.Sources) so both take the
// same config. ignition.config.url on the kernel line (Ignition's own
// argument) is the only source when present, as in Ignition, read by
// cfgURL. Otherwise: the platform's own source first
// (pith.platform=openstack: the config drive; pith.platform=ec2: EC2's
// metadata service, read by ec2, nil for none), then fw_cfg, the config
// drive, the OEM partition's config.ign (oem, nil without pith.oem=). EC2
// is read only when the platform names it: elsewhere pithd tries it after
// the local sources, and bringing a NIC up on every first boot to look
// would cost each machine without the service the wait. pithd's other
// network sources (DigitalOcean, pith.config.url) stay its own: with
// pith.config.url or cloud-config-url on the kernel line, which pithd
// takes before any other but ignition.config.url, there is no source here
// (the note says why) and pithd refuses storage and kernelArguments from
// it; DigitalOcean comes after the local sources unless the platform
// names it (pithd's notice then names both sources).
func firstBootSources(root, cmdline string, oem oemReader, ec2 func() ([]byte, string, error), cfgURL func(string) func() ([]byte, string, error)) ([]firstBootSource, string) {
	if u := cmdlineValue(cmdline, configurl.Key); u != "" && cfgURL != nil {
		note := ""
		if p := cmdlineValue(cmdline, "pith.config.url", "cloud-config-url"); p != "" {
			note = "the kernel line names " + configurl.Key + " and a config URL (" + cloudconfig.RedactSource(p) + "): " + configurl.Key + " comes first, as in pithd"
		}
		return []firstBootSource{{Name: configurl.Key + " " + cloudconfig.RedactSource(u), Pithd: pithdIgnitionURL, Read: cfgURL(u), Ignition: true}}, note
	}
	if u := cmdlineValue(cmdline, "pith.config.url", "cloud-config-url"); u != "" {
		return nil, "the kernel line names a config URL (" + u + "), which pithd reads after boot, with the network: no storage or kernel arguments are applied here (" + configurl.Key + "= is read here)"
	}
	fw := firstBootSource{Name: "fw_cfg", Pithd: pithdFwCfg, Read: func() ([]byte, string, error) {
		ud, err := readFwCfgUserData(root)
		return ud, "", err
	}}
	cd := firstBootSource{Name: "config drive", Pithd: pithdConfigDrive,
		Read: configDriveReader(filepath.Join(root, "sys/class/block"), filepath.Join(root, "dev"))}
	out := []firstBootSource{fw, cd}
	switch strings.ToLower(cmdlineValue(cmdline, "pith.platform", "coreos.oem.id", "flatcar.oem.id", "ignition.platform.id")) {
	case "openstack", "configdrive", "config-drive":
		out = []firstBootSource{cd, fw}
	case "ec2", "aws":
		if ec2 != nil {
			out = append([]firstBootSource{{Name: "EC2 metadata service", Pithd: pithdEC2, Read: ec2}}, out...)
		}
	}
	if oem != nil {
		out = append(out, firstBootSource{Name: "OEM " + OEMIgnition, Pithd: pithdOEM, Read: func() ([]byte, string, error) {
			b, err := oem()
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				err = storageStop("reading the OEM partition's "+OEMIgnition, err)
			}
			return b, "", err
		}})
	}
	return out, ""
}

// cmdlineValue returns the value of the last key=value on the kernel line
// with one of keys, as agent/datasource reads it.
func cmdlineValue(cmdline string, keys ...string) string {
	val := ""
	for _, f := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		for _, want := range keys {
			if ok && k == want {
				val = v
			}
		}
	}
	return val
}

// configDriveReader looks at every block device (sysfs's class dir, the
// nodes in dev) for a config drive (package configdrive: pithd's reader),
// in name order, partitions included, as udev's by-label/config-2 link
// would find one for pithd. Only ISO 9660 and FAT devices are opened.
func configDriveReader(classDir, dev string) func() ([]byte, string, error) {
	return func() ([]byte, string, error) {
		ents, err := os.ReadDir(classDir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", err // no block devices at all
		}
		if err != nil {
			return nil, "", fmt.Errorf("listing block devices: %w", err)
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			if n := e.Name(); !strings.HasPrefix(n, "loop") && !strings.HasPrefix(n, "ram") && !strings.HasPrefix(n, "zram") {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			p := filepath.Join(dev, n)
			if !configdrive.Probe(p) {
				continue
			}
			d, err := configdrive.Read(p, cloudconfig.MaxSize)
			if errors.Is(err, configdrive.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, "", fmt.Errorf("config drive %s: %w", p, err)
			}
			if d.MetaData != nil {
				if _, err := configdrive.ParseMeta(d.MetaData); err != nil {
					return d.UserData, "config drive " + p, &metaDataError{fmt.Errorf("config drive %s: %w", p, err)}
				}
			}
			return d.UserData, "config drive " + p, nil
		}
		return nil, "", fs.ErrNotExist
	}
}

// firstBootUserData reads the sources in order and returns the first
// present one's user-data (nil when it has none, no source is present,
// or one did not answer in time) and that source, its name made precise by what Read said. A
// source that cannot be read stops the boot: guessing on could apply
// another config than the one pithd will take.
func firstBootUserData(sources []firstBootSource) ([]byte, firstBootSource, error) {
	for _, s := range sources {
		ud, where, err := s.Read()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if errors.Is(err, errNoFirstBootConfig) {
			return nil, firstBootSource{}, nil // Read said why on the console
		}
		if me := (*metaDataError)(nil); errors.As(err, &me) {
			s.metaErr, err = me.err, nil
		}
		var stop *StopError
		if errors.As(err, &stop) {
			return nil, s, err
		}
		if err != nil {
			return nil, s, storageStop("reading the "+s.Name, err)
		}
		if where != "" {
			s.Name = where
		}
		return ud, s, nil
	}
	return nil, firstBootSource{}, nil
}

// recordSource writes node.IgnitionSourceMarker on ROOT when cfg (data,
// decompressed) has kernel arguments or storage, which only the initramfs
// applies: pithd's name for src and data's sum, so pithd's first boot can
// name both sources when it takes another config. A source whose
// metadata pithd would refuse stops the boot first, before anything is
// applied, as fw_cfg's meta-data does (storagePlan): pithd would not take
// the config whose disks were laid out.
func recordSource(root string, cfg *cloudconfig.IgnitionConfig, data []byte, src firstBootSource) error {
	k := cfg.KernelArguments
	if !hasStorage(cfg) && len(k.ShouldExist)+len(k.ShouldNotExist) == 0 {
		return nil
	}
	if src.metaErr != nil {
		return storageStop("reading the "+src.Name+"'s metadata", src.metaErr)
	}
	sum := sha256.Sum256(data)
	if err := durableMarker(root, node.IgnitionSourceMarker, src.Pithd+" "+hex.EncodeToString(sum[:])+"\n"); err != nil {
		return storageStop("writing "+node.IgnitionSourceMarker, err)
	}
	return nil
}
