package cloudconfig

import (
	"slices"
	"strings"
	"testing"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
)

func TestIgnitionKernelArguments(t *testing.T) {
	const head = `{"ignition":{"version":"3.4.0"},"kernelArguments":`
	long := `"a=` + strings.Repeat("x", KargsMaxLen) + `"`
	for _, tc := range []struct {
		name string
		in   string
		want []want
	}{
		{"accepted", `{"shouldExist":["e2e_karg=1","mitigations=auto,nosmt","ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:none"],"shouldNotExist":["quiet"]}`, nil},
		{"spec 3.3 too", `{"shouldExist":["quiet"]}`, nil},
		{"pith.* is the image's", `{"shouldExist":["pith.debug"]}`, []want{{1, 67, E, `kernelArguments.shouldExist.0: kernel argument "pith.debug": pith.* arguments are the image's`}}},
		{"pith.* not removable either", `{"shouldNotExist":["pith.verity=off"]}`, []want{{1, 70, E, "pith.* arguments are the image's"}}},
		{"init", `{"shouldExist":["quiet","init=/bin/sh"]}`, []want{{1, 75, E, `shouldExist.1: kernel argument "init=/bin/sh": init= would start something other than Pith's initramfs init`}}},
		{"rdinit", `{"shouldExist":["rdinit=/bin/sh"]}`, []want{{1, 67, E, "rdinit= would start"}}},
		{"root", `{"shouldExist":["root=/dev/sda1"]}`, []want{{1, 67, E, "root= is not read on Pith"}}},
		{"rootflags", `{"shouldExist":["rootflags=ro"]}`, []want{{1, 67, E, "rootflags= is not read"}}},
		{"dracut", `{"shouldExist":["rd.neednet=1"]}`, []want{{1, 67, E, "rd.* arguments are dracut's"}}},
		{"panic", `{"shouldExist":["panic=0"]}`, []want{{1, 67, E, "panic=10 is the image's"}}},
		{"space", `{"shouldExist":["a b"]}`, []want{{1, 67, E, `" " is not allowed: each entry is one argument`}}},
		{"quote", `{"shouldExist":["a=\"b\""]}`, []want{{1, 67, E, `"\"" is not allowed`}}},
		{"GRUB variable", `{"shouldExist":["a=${pith_usrhash}"]}`, []want{{1, 67, E, `"$" is not allowed`}}},
		{"empty", `{"shouldExist":[""]}`, []want{{1, 67, E, "an empty kernel argument"}}},
		{"image's console cannot go", `{"shouldNotExist":["console=tty0"]}`, []want{{1, 70, E, "on every Pith image's kernel line"}}},
		{"image's console may be asked for", `{"shouldExist":["console=tty0"]}`, nil},
		{"too long", `{"shouldExist":[` + long + `]}`, []want{{1, 67, E, "add up to 902 bytes; Pith keeps at most 900"}}},
		// Ignition's own rule: one set of keys over both lists.
		{"in both lists", `{"shouldExist":["quiet"],"shouldNotExist":["quiet"]}`, []want{{1, 94, E, "kernelArguments.shouldNotExist.0: duplicate entry defined"}}},
		{"twice", `{"shouldExist":["quiet","quiet"]}`, []want{{1, 75, E, "duplicate entry defined"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := head + tc.in + "}"
			if tc.name == "spec 3.3 too" {
				in = strings.Replace(in, "3.4.0", "3.3.0", 1)
			}
			checkReport(t, Validate([]byte(in)), tc.want)
		})
	}
	// replace would drop the arguments the initramfs already applied.
	in := `{"ignition":{"version":"3.4.0","config":{"replace":{"source":"https://10.0.2.2/x.ign"}}},"kernelArguments":{"shouldExist":["quiet"]}}`
	checkReport(t, Validate([]byte(in)), []want{{1, 62, E, "ignition.config.replace discards this whole config, kernelArguments too"}})
}

func kargs(exist, notExist []string) igntypes.KernelArguments {
	var k igntypes.KernelArguments
	for _, a := range exist {
		k.ShouldExist = append(k.ShouldExist, igntypes.KernelArgument(a))
	}
	for _, a := range notExist {
		k.ShouldNotExist = append(k.ShouldNotExist, igntypes.KernelArgument(a))
	}
	return k
}

const imageLine = "console=tty0 console=ttyS0,115200n8 panic=10 pith.slot=a quiet"

func TestPlanKargs(t *testing.T) {
	for _, tc := range []struct {
		name            string
		exist, notExist []string
		file            []string
		cmdline         string
		args            []string
		added, removed  []string
		fixed           []string
		unmet           []string
	}{
		{name: "append to nothing", exist: []string{"a=1", "b"}, cmdline: imageLine,
			args: []string{"a=1", "b"}, added: []string{"a=1", "b"}, unmet: []string{"+a=1", "+b"}},
		{name: "append to the file's", exist: []string{"b"}, file: []string{"a=1"}, cmdline: imageLine + " a=1",
			args: []string{"a=1", "b"}, added: []string{"b"}, unmet: []string{"+b"}},
		{name: "already satisfied by the file", exist: []string{"a=1"}, file: []string{"a=1"}, cmdline: imageLine + " a=1",
			args: []string{"a=1"}},
		{name: "already on the image's line", exist: []string{"console=tty0"}, notExist: []string{"nosmt"}, cmdline: imageLine},
		{name: "whole arguments only", exist: []string{"a=2"}, file: []string{"a=1"}, cmdline: imageLine + " a=1",
			args: []string{"a=1", "a=2"}, added: []string{"a=2"}, unmet: []string{"+a=2"}},
		{name: "remove every copy from the file", notExist: []string{"a=1"}, file: []string{"a=1", "c", "a=1"}, cmdline: imageLine + " a=1 c a=1",
			args: []string{"c"}, removed: []string{"a=1"}, unmet: []string{"-a=1"}},
		{name: "remove and append", exist: []string{"b"}, notExist: []string{"c"}, file: []string{"c"}, cmdline: imageLine + " c",
			args: []string{"b"}, added: []string{"b"}, removed: []string{"c"}, unmet: []string{"+b", "-c"}},
		{name: "the image's argument cannot be removed", notExist: []string{"quiet"}, cmdline: imageLine,
			fixed: []string{"quiet"}, unmet: []string{"-quiet"}},
		{name: "the file did not take effect", exist: []string{"a=1"}, file: []string{"a=1"}, cmdline: imageLine,
			args: []string{"a=1"}, unmet: []string{"+a=1"}},
		{name: "a quoted value is one argument", exist: []string{"b"}, cmdline: `x="y b" ` + imageLine,
			args: []string{"b"}, added: []string{"b"}, unmet: []string{"+b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := kargs(tc.exist, tc.notExist)
			p := PlanKargs(k, tc.file, tc.cmdline)
			for _, c := range []struct {
				what      string
				got, want []string
			}{{"args", p.Args, tc.args}, {"added", p.Added, tc.added}, {"removed", p.Removed, tc.removed}, {"fixed", p.Fixed, tc.fixed},
				{"unmet", KargsUnmet(k, tc.cmdline), tc.unmet}} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
		})
	}
}
