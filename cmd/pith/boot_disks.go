package main

// pith boot's disks: the overlay's size and blank extra disks per node.

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/vm"
)

// diskFlags are --disk-size and --extra-disk.
func (o *bootOpts) diskFlags(f *pflag.FlagSet) {
	f.StringVar(&o.diskSize, "disk-size", "", "virtual disk size per node, e.g. 8GiB (default: the image's size)")
	f.Var(&o.extraDisks, "extra-disk", "blank sparse disk of `SIZE` for each node (e.g. 1GiB, at least 1 MiB; repeatable): the guest's /dev/vdb, /dev/vdc, ..., stably /dev/disk/by-id/virtio-pith-extra-1, -2, ...; blank again on every pith boot")
}

// extraDisks is --extra-disk's value: repeated, or comma-separated. Set
// parses each size, so a bad one fails before pith boot touches the state
// directory; String joins them, so --detach hands them on as one flag.
type extraDisks struct {
	text  []string
	sizes []int64
}

func (e *extraDisks) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		n, err := parseSize(s)
		if err != nil {
			return fmt.Errorf("%q is not a size (e.g. 1GiB, 512MiB)", s)
		}
		if n < vm.MinExtraDiskSize {
			return fmt.Errorf("%s is below the 1 MiB minimum", s)
		}
		e.text = append(e.text, s)
		e.sizes = append(e.sizes, n)
	}
	if len(e.sizes) > vm.MaxExtraDisks {
		return fmt.Errorf("%d extra disks: at most %d", len(e.sizes), vm.MaxExtraDisks)
	}
	return nil
}

func (e *extraDisks) String() string { return strings.Join(e.text, ",") }

func (e *extraDisks) Type() string { return "size" }

// extraDiskList is a node's extra disks for the status table, by the
// names the guest has for them under /dev/disk/by-id.
func extraDiskList(ds []vm.DiskInfo) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = "virtio-" + d.Serial + "=" + config.FormatSize(d.Size)
	}
	return strings.Join(s, " ")
}
