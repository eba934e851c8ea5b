package main

// pith boot's flags turned into the machines' configuration.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/vm"
)

// secureBootFlags are the boot chain's: Secure Boot and the TPM.
func (o *bootOpts) secureBootFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.secureBoot, "secure-boot", false, "with --firmware uefi: enforce UEFI Secure Boot, with the image's PK, KEK and db enrolled in the firmware (an image built with --secure-boot-keys; the default, with UEFI, for an image whose manifest says so)")
	f.StringVar(&o.secureBootKeys, "secure-boot-keys", "", "`DIR` with PK.crt, KEK.crt and db.crt to enroll (default: the pith-sb-*.crt beside --image)")
	f.BoolVar(&o.tpm, "tpm", false, "attach a TPM 2.0 (swtpm) to each machine: the firmware, GRUB and the kernel measure the boot into it")
}

func (o *bootOpts) clusterConfig(ctx context.Context, log func(string, ...any)) (vm.ClusterConfig, error) {
	var cc vm.ClusterConfig
	if _, err := os.Stat(o.image); err != nil {
		return cc, fmt.Errorf("image %s: %v (build it with `make image` or pass --image)", o.image, errors.Unwrap(err))
	}
	if o.userData != "" {
		if _, err := os.Stat(o.userData); err != nil {
			return cc, fmt.Errorf("user-data: %v", err)
		}
	}
	var size int64
	if o.diskSize != "" {
		var err error
		if size, err = parseSize(o.diskSize); err != nil {
			return cc, fmt.Errorf("--disk-size %q: %v (e.g. 8GiB, 4096MiB)", o.diskSize, err)
		}
	}
	fwd := []int{}
	for _, p := range strings.Split(o.forwards, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return cc, fmt.Errorf("--forward %q: %q is not a TCP port", o.forwards, p)
		}
		fwd = append(fwd, n)
	}
	m := o.imageManifest()
	sb, err := o.secureBootCerts(m, log)
	if err != nil {
		return cc, err
	}
	arch, err := o.imageArch(m)
	if err != nil {
		return cc, err
	}
	return vm.ClusterConfig{
		Dir: o.state, Nodes: o.nodes, Log: log,
		Node: vm.Config{
			Image: o.image, Firmware: o.firmware, MemoryMiB: o.memory, CPUs: o.cpus,
			DiskSize: size, ExtraDiskSizes: o.extraDisks.sizes, UserData: o.userData, Forwards: fwd,
			Accel:      vm.ProbeAccel(ctx, "qemu-system-x86_64"),
			SecureBoot: sb, TPM: o.tpm, Arch: arch,
		},
	}, nil
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suf  string
		mult int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"G", 1 << 30}, {"M", 1 << 20}, {"", 1}}
	for _, u := range units {
		if strings.HasSuffix(s, u.suf) {
			n, err := strconv.ParseInt(strings.TrimSuffix(s, u.suf), 10, 64)
			if err != nil || n <= 0 {
				return 0, errors.New("not a size")
			}
			if n > math.MaxInt64/u.mult {
				return 0, errors.New("too large")
			}
			return n * u.mult, nil
		}
	}
	return 0, errors.New("not a size")
}

// secureBootCerts are the certificates --secure-boot enrolls: from
// --secure-boot-keys, or those pith build wrote beside the image. An
// image whose manifest m says its boot chain is signed boots with Secure
// Boot on (and UEFI) unless --secure-boot or --firmware says otherwise:
// a signed chain booted without it checks nothing in the firmware.
func (o *bootOpts) secureBootCerts(m *manifest.Manifest, log func(string, ...any)) (*vm.SecureBootCerts, error) {
	signed := m != nil && m.SecureBoot != nil
	if signed && !o.secureBootSet && o.firmware != vm.BIOS {
		if o.firmware == "" {
			o.firmware = vm.UEFI
		}
		o.secureBoot = true
		log("Secure Boot: on, with the image's keys enrolled (its manifest says its boot chain is signed); --secure-boot=false or --firmware bios boots without")
	}
	if !o.secureBoot {
		if o.secureBootKeys != "" {
			return nil, errors.New("--secure-boot-keys needs --secure-boot")
		}
		return nil, nil
	}
	if o.firmware != vm.UEFI {
		return nil, errors.New("--secure-boot needs --firmware uefi")
	}
	var c *vm.SecureBootCerts
	var err error
	if o.secureBootKeys != "" {
		c, err = vm.LoadSecureBootCerts(o.secureBootKeys, "")
	} else {
		c, err = vm.LoadSecureBootCerts(filepath.Dir(o.image), vm.SecureBootCertPrefix)
	}
	if err != nil || !signed {
		return c, err
	}
	if err := c.CheckAgainst(m.SecureBoot.Certs); err != nil {
		return nil, fmt.Errorf("%s: %w: pass the right --secure-boot-keys, or rebuild the image", o.image, err)
	}
	return c, nil
}
