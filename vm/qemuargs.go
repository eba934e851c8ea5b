package vm

// QEMU's command line for a machine: firmware, disks, fw_cfg, networks and
// the host ports forwarded to the guest.

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// args builds QEMU's command line.
func (m *Machine) args(vars string, fwcfg map[string]string) []string {
	c := m.Config
	machine := c.machineType()
	if c.SecureBoot != nil {
		// OVMF's Secure Boot build keeps its variables behind SMM, so the
		// guest OS cannot rewrite db or PK through the flash.
		machine += ",smm=on"
	}
	a := []string{
		"-name", c.Name,
		"-machine", machine,
		"-accel", c.Accel.Name,
		"-m", strconv.Itoa(c.MemoryMiB),
		"-smp", strconv.Itoa(c.CPUs),
		"-nodefaults", "-display", "none",
		"-pidfile", filepath.Join(m.Dir, "qemu.pid"),
		"-qmp", "unix:" + m.QMPSock + ",server=on,wait=off",
		// The console: a socket for interactive use, logged to a file across
		// reboots (logappend) so tests can read every boot.
		"-chardev", "socket,id=ser0,path=" + m.SerialSock + ",server=on,wait=off,logfile=" + m.SerialLog + ",logappend=on",
		"-serial", "chardev:ser0",
		"-device", "virtio-rng-pci",
	}
	a = append(a, "-cpu", c.cpuModel())
	switch {
	case c.Firmware == UEFI && c.SecureBoot != nil:
		a = append(a,
			"-global", "driver=cfi.pflash01,property=secure,value=on",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCodeSecure,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	case c.Firmware == UEFI:
		code, _ := c.uefiFiles()
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	case c.BIOSFile != "":
		a = append(a, "-bios", c.BIOSFile)
	}
	if c.Image != "" {
		a = append(a, "-drive", "if=virtio,format=qcow2,discard=unmap,file="+m.Disk)
	}
	for i, d := range c.ExtraDisks {
		// A serial names the disk stably (/dev/disk/by-id/virtio-<serial>):
		// vda, vdb follow the guest's (asynchronous) probe order.
		// A PCI slot above the automatic ones: QEMU creates the if=virtio
		// boot disk after every -device, and the firmware tries disks in
		// PCI order (a blank extra disk in a lower slot stopped the boot).
		id := fmt.Sprintf("extra%d", i+1)
		a = append(a, "-drive", "if=none,id="+id+",format=raw,discard=unmap,file="+d,
			"-device", fmt.Sprintf("virtio-blk-pci,drive=%s,serial=%s,addr=0x%x", id, ExtraDiskSerial(i), 0x10+i))
	}
	if c.CDROM != "" {
		// On the q35 machine's own AHCI controller; the firmware boots it
		// when the disk holds nothing bootable.
		a = append(a, "-drive", "if=none,id=cd0,media=cdrom,readonly=on,format=raw,file="+c.CDROM, "-device", "ide-cd,drive=cd0")
	}
	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel, "-append", c.Append)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
	}
	// User-mode network: restrict=on keeps the guest from reaching the host
	// or anything beyond it; only the forwards below, bound to 127.0.0.1, pass.
	user := "user,id=net0,restrict=on"
	if c.UserNet != "" {
		user += ",net=" + c.UserNet
	}
	for _, g := range c.Forwards {
		user += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", m.Ports[g], g)
	}
	for _, g := range c.GuestFwd {
		user += ",guestfwd=" + optEscape(g)
	}
	nic := "virtio-net-pci,netdev=net0,mac=" + userMAC(c.PrivateMAC)
	if nb := c.Netboot; nb != nil {
		if nb.TFTPDir != "" {
			user += ",tftp=" + optEscape(nb.TFTPDir)
		}
		user += ",bootfile=" + optEscape(nb.Bootfile)
		if c.Firmware == UEFI {
			// OVMF ignores -boot (SeaBIOS's order): it boots in the order
			// of the devices' bootindex, which QEMU passes as fw_cfg's
			// bootorder, so the NIC's PXE comes before an empty disk's.
			nic += ",bootindex=1"
		} else {
			// SeaBIOS tries the NICs' option ROMs first.
			a = append(a, "-boot", "n")
		}
	}
	a = append(a, "-netdev", user, "-device", nic)
	if c.Switch != "" {
		a = append(a,
			"-netdev", "stream,id=net1,server=off,addr.type=unix,addr.path="+c.Switch,
			"-device", "virtio-net-pci,netdev=net1,mac="+c.PrivateMAC)
	}
	a = append(a, m.tpmArgs()...)
	names := make([]string, 0, len(fwcfg))
	for k := range fwcfg {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		a = append(a, "-fw_cfg", "name="+k+",file="+fwcfg[k])
	}
	return a
}

// optEscape escapes a value inside a QEMU option list (a comma is doubled).
func optEscape(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// userMAC derives the user-mode NIC's MAC from the private one so both are
// stable per node.
func userMAC(private string) string {
	if len(private) == 17 {
		return "52:54:00:aa" + private[11:]
	}
	return "52:54:00:aa:00:01"
}

// freePorts picks a free 127.0.0.1 TCP port for each guest port.
func freePorts(guest []int) (map[int]int, error) {
	ports := map[int]int{}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, g := range guest {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %v", err)
		}
		ls = append(ls, l)
		ports[g] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@", r))
		}) < 0 {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// ExtraDiskSerial is the serial of Config.ExtraDisks[i]: the guest sees it
// as /dev/disk/by-id/virtio-pith-extra-<i+1>.
func ExtraDiskSerial(i int) string { return fmt.Sprintf("pith-extra-%d", i+1) }
