package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/pith-os/pith/vm"
)

// TestExtraDiskFlag follows --extra-disk from the command line to the
// machine's QEMU arguments (vm.Start with false(1) as QEMU: it writes
// qemu.cmdline, then QEMU "exits").
func TestExtraDiskFlag(t *testing.T) {
	t.Setenv("PITH_ACCEL", "tcg") // no KVM probe
	image := filepath.Join(t.TempDir(), "pith.qcow2")
	if err := os.WriteFile(image, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var sixteen []string
	for range 16 {
		sixteen = append(sixteen, "--extra-disk", "1M")
	}
	const bad = `invalid argument %q for "--extra-disk" flag: `
	tests := []struct {
		name string
		args []string
		want []int64
		err  string
	}{
		{name: "none", args: nil},
		{name: "repeated", args: []string{"--extra-disk", "1GiB", "--extra-disk", "2GiB"}, want: []int64{1 << 30, 2 << 30}},
		{name: "comma list as --detach hands it on", args: []string{"--extra-disk=512MiB, 1G"}, want: []int64{512 << 20, 1 << 30}},
		{name: "bytes: exactly 1 MiB", args: []string{"--extra-disk", "1048576"}, want: []int64{1 << 20}},
		{name: "below 1 MiB", args: []string{"--extra-disk", "1048575"}, err: fmt.Sprintf(bad, "1048575") + "1048575 is below the 1 MiB minimum"},
		{name: "not a size", args: []string{"--extra-disk", "lots"}, err: fmt.Sprintf(bad, "lots") + `"lots" is not a size (e.g. 1GiB, 512MiB)`},
		{name: "unknown unit", args: []string{"--extra-disk", "1TiB"}, err: fmt.Sprintf(bad, "1TiB") + `"1TiB" is not a size (e.g. 1GiB, 512MiB)`},
		{name: "zero", args: []string{"--extra-disk", "0GiB"}, err: fmt.Sprintf(bad, "0GiB") + `"0GiB" is not a size (e.g. 1GiB, 512MiB)`},
		{name: "overflows int64", args: []string{"--extra-disk", "9000000000GiB"}, err: fmt.Sprintf(bad, "9000000000GiB") + `"9000000000GiB" is not a size (e.g. 1GiB, 512MiB)`},
		{name: "empty list entry", args: []string{"--extra-disk=1GiB,"}, err: fmt.Sprintf(bad, "1GiB,") + `"" is not a size (e.g. 1GiB, 512MiB)`},
		{name: "more than PCI slots", args: sixteen, err: fmt.Sprintf(bad, "1M") + "16 extra disks: at most 15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &bootOpts{image: image, nodes: 1, forwards: "22"}
			f := pflag.NewFlagSet("boot", pflag.ContinueOnError)
			f.SetOutput(new(bytes.Buffer))
			o.diskFlags(f)
			err := f.Parse(tt.args)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("parse %q: %v, want %s", tt.args, err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(o.extraDisks.sizes, tt.want) {
				t.Fatalf("parse %q: sizes %v, %v; want %v", tt.args, o.extraDisks.sizes, err, tt.want)
			}
			// --detach passes the flag on as "--extra-disk=" + String().
			again := &bootOpts{}
			g := pflag.NewFlagSet("supervisor", pflag.ContinueOnError)
			again.diskFlags(g)
			if len(tt.want) > 0 {
				if err := g.Parse([]string{"--extra-disk=" + o.extraDisks.String()}); err != nil || !slices.Equal(again.extraDisks.sizes, tt.want) {
					t.Fatalf("handed on as %q: %v, %v", o.extraDisks.String(), again.extraDisks.sizes, err)
				}
			}
			cc, err := o.clusterConfig(context.Background(), nil)
			if err != nil || !slices.Equal(cc.Node.ExtraDiskSizes, tt.want) {
				t.Fatalf("clusterConfig: ExtraDiskSizes %v, %v; want %v", cc.Node.ExtraDiskSizes, err, tt.want)
			}
			node := cc.Node
			node.QEMU, node.Image = "false", "" // no qemu-img on the empty image
			dir := t.TempDir()
			if _, err := vm.Start(context.Background(), node, dir); err == nil || !strings.Contains(err.Error(), "QEMU exited") {
				t.Fatalf("vm.Start with false(1) as QEMU: %v", err)
			}
			cmdline, err := os.ReadFile(filepath.Join(dir, "qemu.cmdline"))
			if err != nil {
				t.Fatal(err)
			}
			for i, size := range tt.want {
				file := filepath.Join(dir, fmt.Sprintf("extra%d.img", i+1))
				arg := fmt.Sprintf("-drive if=none,id=extra%[1]d,format=raw,discard=unmap,file=%[2]s -device virtio-blk-pci,drive=extra%[1]d,serial=%[3]s,addr=0x%[4]x",
					i+1, file, vm.ExtraDiskSerial(i), 0x10+i)
				if !strings.Contains(string(cmdline), arg) {
					t.Errorf("qemu.cmdline lacks %q:\n%s", arg, cmdline)
				}
				if st, err := os.Stat(file); err != nil || st.Size() != size {
					t.Errorf("%s: %v, want %d bytes", file, err, size)
				}
			}
			if n := strings.Count(string(cmdline), "virtio-blk-pci"); n != len(tt.want) {
				t.Errorf("%d virtio-blk-pci devices, want %d:\n%s", n, len(tt.want), cmdline)
			}
		})
	}
}

func TestBootStatusExtraDisks(t *testing.T) {
	gone := vm.Info{Name: "node2", PID: 1 << 30, SerialLog: "/s/node2/serial.log"}
	withDisks := vm.Info{Name: "node1", PID: 1 << 30, SerialLog: "/s/node1/serial.log", ExtraDisks: []vm.DiskInfo{
		{Serial: vm.ExtraDiskSerial(0), File: "/s/node1/extra1.img", Size: 1 << 30},
		{Serial: vm.ExtraDiskSerial(1), File: "/s/node1/extra2.img", Size: 512 << 20},
	}}
	tests := []struct {
		name  string
		nodes []vm.Info
		want  []string // lines, spaces squeezed
	}{
		{"no extra disks: no column", []vm.Info{gone},
			[]string{"NODE PID STATE PRIVATE FORWARDS (127.0.0.1) CONSOLE LOG", "node2 1073741824 stopped /s/node2/serial.log"}},
		{"per node", []vm.Info{withDisks, gone},
			[]string{"NODE PID STATE PRIVATE FORWARDS (127.0.0.1) CONSOLE LOG EXTRA DISKS (/dev/disk/by-id/)",
				"node1 1073741824 stopped /s/node1/serial.log virtio-pith-extra-1=1GiB virtio-pith-extra-2=512MiB",
				"node2 1073741824 stopped /s/node2/serial.log"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b, _ := json.Marshal(vm.State{Nodes: tt.nodes})
			if err := os.WriteFile(filepath.Join(dir, vm.StateFile), b, 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := bootStatus(&out, dir); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")[1:] // after the supervisor line
			for i := range lines {
				lines[i] = strings.Join(strings.Fields(lines[i]), " ")
			}
			if !slices.Equal(lines, tt.want) {
				t.Errorf("status table:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
