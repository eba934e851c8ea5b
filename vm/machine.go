package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pith-os/pith/atomicfile"
)

// Firmware names how the machine boots the disk.
const (
	BIOS = "bios" // SeaBIOS -> GRUB from BIOS-BOOT
	UEFI = "uefi" // OVMF -> EFI/BOOT/BOOTX64.EFI
)

// Default OVMF files (Debian's ovmf package).
var (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// fw_cfg names the image's datasource reads (agent/datasource FwCfg): the
// user-data, and meta-data as JSON (hostname, private_ipv4, ssh_public_keys),
// which pithd firstboot applies like a cloud's metadata service.
const (
	FwCfgUserData = "opt/org.pith/user-data"
	FwCfgMetaData = "opt/org.pith/meta-data"
)

// EmptyUserData is passed when none is given: the datasource only reads
// meta-data (and so the SSH key) next to a user-data entry.
const EmptyUserData = "#cloud-config\n"

// MetaData is the JSON shape of opt/org.pith/meta-data.
type MetaData struct {
	Hostname      string   `json:"hostname,omitempty"`
	InstanceID    string   `json:"instance_id,omitempty"`
	PrivateIPv4   string   `json:"private_ipv4,omitempty"`
	SSHPublicKeys []string `json:"ssh_public_keys,omitempty"`
}

// DefaultForwards are the guest TCP ports forwarded to 127.0.0.1: SSH, the
// KV (etcd v2 API) and the fleet-style API port.
var DefaultForwards = []int{22, 2379, 49153}

// Config describes one machine.
type Config struct {
	Name      string // node name, e.g. node1; also the state subdirectory
	Image     string // base disk image (qcow2 or raw); never written
	Firmware  string // BIOS or UEFI
	MemoryMiB int
	CPUs      int
	// DiskSize is the overlay's virtual size in bytes; 0 keeps the base size.
	// A larger overlay lets the guest grow ROOT.
	DiskSize int64
	UserData string // file passed as fw_cfg opt/org.pith/user-data, optional
	SSHKey   string // authorized_keys line for user core, passed in meta-data, optional
	// NoUserData passes no fw_cfg user-data at all (UserData is ignored),
	// as on bare metal: the disk's own config (pith install's OEM
	// config.ign) is then the node's.
	NoUserData bool
	// Forwards are guest TCP ports reachable from 127.0.0.1:<host port>.
	Forwards []int
	// GuestFwd are QEMU guestfwd rules for the user network, e.g.
	// "tcp:10.0.2.100:80-cmd:relay 127.0.0.1:8080": the guest's connections
	// to that virtual address go to a host command (one per connection)
	// while restrict=on still keeps it from the host and anything beyond.
	GuestFwd []string
	// UserNet is the user network's IPv4 range (QEMU's net=), e.g.
	// "169.254.0.0/16": QEMU accepts guestfwd addresses only inside it, so
	// EC2's metadata address 169.254.169.254 needs a link-local network.
	// Empty keeps QEMU's 10.0.2.0/24.
	UserNet string
	// Switch is the private network's socket; empty means no second NIC.
	Switch      string
	PrivateMAC  string            // MAC of the private NIC
	PrivateIPv4 string            // private network address (CIDR), in meta-data
	FwCfg       map[string]string // extra fw_cfg name -> file
	Accel       Accel
	QEMU        string // qemu-system-x86_64 binary; empty = from PATH
	// Arch is the guest's architecture: amd64 (default) or arm64 (QEMU's
	// virt board with AAVMF, see archDefaults).
	Arch string
	// Kernel/Initrd/Append boot a kernel directly instead of the disk's boot
	// loader (development only: the image boots through GRUB).
	Kernel, Initrd, Append string
	// BIOSFile replaces the BIOS firmware image (tests).
	BIOSFile string
	// CDROM is an ISO image attached as a read-only CD-ROM (pith.iso).
	CDROM string
	// ExtraDisks are raw disk files attached as virtio disks after the
	// boot disk, with serials (ExtraDiskSerial) to name them by.
	ExtraDisks []string
	// ExtraDiskSizes are blank sparse raw disks (at least MinExtraDiskSize
	// bytes) that Start creates in the node's directory, afresh on every
	// Start like the overlay, and attaches after ExtraDisks.
	ExtraDiskSizes []int64
	// SecureBoot, with UEFI: OVMF enforces Secure Boot with these
	// certificates enrolled as PK, KEK and db.
	SecureBoot *SecureBootCerts
	// TPM attaches a TPM 2.0 (swtpm).
	TPM bool
	// Netboot boots from the network (PXE), asking QEMU's own DHCP/TFTP
	// server for it: under BIOS the user network's NIC's iPXE ROM
	// (Debian's ipxe-qemu), under UEFI OVMF's PXE, which runs the boot
	// file as an EFI application (pith-pxe.efi).
	Netboot *Netboot
}

// Netboot is what QEMU's user network offers a PXE client.
type Netboot struct {
	// TFTPDir is served read-only by QEMU's TFTP server (tftp=); optional.
	TFTPDir string
	// Bootfile is DHCP's boot file (bootfile=): a file in TFTPDir, or,
	// for iPXE (BIOS), a URL it fetches itself, e.g. http:// to a
	// GuestFwd address.
	Bootfile string
}

// Machine is a running (or finished) QEMU process and its files.
type Machine struct {
	Config     Config
	Dir        string      // state directory of this node
	Disk       string      // copy-on-write overlay
	SerialLog  string      // everything the guest wrote on ttyS0 (all boots)
	SerialSock string      // interactive console (unix socket)
	QMPSock    string      // QMP control socket
	Ports      map[int]int // guest port -> 127.0.0.1 port
	Started    time.Time

	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error
	mu     sync.Mutex
}

func (c *Config) defaults() error {
	if c.Name == "" {
		c.Name = "node1"
	}
	if err := c.archDefaults(); err != nil {
		return err
	}
	if c.Firmware == "" {
		c.Firmware = BIOS
	}
	if c.Firmware != BIOS && c.Firmware != UEFI {
		return fmt.Errorf("firmware %q: use %q or %q", c.Firmware, BIOS, UEFI)
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 1024
	}
	if c.MemoryMiB < 256 {
		return fmt.Errorf("memory %d MiB is too small: use at least 256", c.MemoryMiB)
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.CPUs < 0 {
		return fmt.Errorf("cpus %d: use a positive number", c.CPUs)
	}
	if c.Forwards == nil {
		c.Forwards = DefaultForwards
	}
	if n := len(c.ExtraDisks) + len(c.ExtraDiskSizes); n > MaxExtraDisks {
		return fmt.Errorf("%d extra disks: at most %d", n, MaxExtraDisks)
	}
	for _, n := range c.ExtraDiskSizes {
		if n < MinExtraDiskSize {
			return fmt.Errorf("extra disk of %d bytes: use at least 1 MiB", n)
		}
	}
	if c.Netboot != nil && (c.Netboot.Bootfile == "" || c.Arch == "arm64") {
		return fmt.Errorf("netboot: needs a boot file, on amd64 (the iPXE ROMs and pith-pxe.efi are x86)")
	}
	if c.Accel.Name == "" {
		c.Accel = Accel{Name: "tcg", Reason: "not probed"}
	}
	if c.QEMU == "" {
		c.QEMU = "qemu-system-x86_64"
	}
	return nil
}

// unixPathMax is sun_path's size: longer socket paths cannot be bound.
const unixPathMax = 107

// Start creates the node's state (overlay, OVMF vars, user-data copy) under
// dir and starts QEMU. The process is killed when ctx is cancelled and, via
// Pdeathsig, when the calling process dies.
func Start(ctx context.Context, cfg Config, dir string) (*Machine, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	m := &Machine{
		Config:     cfg,
		Dir:        dir,
		Disk:       filepath.Join(dir, "disk.qcow2"),
		SerialLog:  filepath.Join(dir, "serial.log"),
		SerialSock: filepath.Join(dir, "serial.sock"),
		QMPSock:    filepath.Join(dir, "qmp.sock"),
		done:       make(chan struct{}),
	}
	for _, p := range []string{m.QMPSock, m.SerialSock, cfg.Switch} {
		if len(p) > unixPathMax {
			return nil, fmt.Errorf("state path too long for a unix socket (%d > %d bytes): %s; use a shorter --state", len(p), unixPathMax, p)
		}
	}
	if cfg.Image != "" {
		if err := createOverlay(ctx, cfg.Image, m.Disk, cfg.DiskSize); err != nil {
			return nil, err
		}
	}
	blank, err := createExtraDisks(dir, cfg.ExtraDiskSizes)
	if err != nil {
		return nil, err
	}
	// Clipped: nodes of one cluster share the template's slice.
	m.Config.ExtraDisks = append(slices.Clip(cfg.ExtraDisks), blank...)
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	if cfg.Firmware == UEFI {
		if code, _ := cfg.uefiFiles(); !exists(code) {
			return nil, fmt.Errorf("UEFI firmware %s missing: install Debian's %s package", code, cfg.firmwarePackage())
		}
		if err := m.firmwareVars(vars); err != nil {
			return nil, fmt.Errorf("per-node OVMF vars: %v", err)
		}
	}
	// Copies: the node keeps the user-data it booted with.
	ud := filepath.Join(dir, "user-data")
	if err := saveUserData(cfg.UserData, ud); err != nil {
		return nil, fmt.Errorf("user-data: %v", err)
	}
	fwcfg := cfg.fwCfgFiles(ud)
	md := MetaData{Hostname: cfg.Name, InstanceID: cfg.Name}
	if cfg.PrivateIPv4 != "" {
		md.PrivateIPv4 = strings.SplitN(cfg.PrivateIPv4, "/", 2)[0]
	}
	if cfg.SSHKey != "" {
		md.SSHPublicKeys = []string{strings.TrimSpace(cfg.SSHKey)}
	}
	mdb, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return nil, err
	}
	mdPath := filepath.Join(dir, "meta-data.json")
	if err := atomicfile.WriteFile(mdPath, append(mdb, '\n'), 0o644); err != nil {
		return nil, err
	}
	fwcfg[FwCfgMetaData] = mdPath
	for _, p := range []string{m.QMPSock, m.SerialSock} {
		os.Remove(p)
	}
	// Free ports are picked, then bound by QEMU: another process can take
	// one in between, so retry with fresh ports when QEMU says so.
	for attempt := 0; ; attempt++ {
		m.Ports, err = freePorts(cfg.Forwards)
		if err != nil {
			return nil, err
		}
		args := m.args(vars, fwcfg)
		err = m.start(ctx, args)
		if err == nil || attempt == 4 || !strings.Contains(err.Error(), "host forwarding") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return m, m.writeInfo()
}

func (m *Machine) start(ctx context.Context, args []string) error {
	if err := m.startTPM(ctx); err != nil {
		return err
	}
	cmd := exec.Command(m.Config.QEMU, args...)
	m.stderr = &syncBuffer{}
	cmd.Stdout = m.stderr
	cmd.Stderr = m.stderr
	cmd.SysProcAttr = childAttr()
	if err := atomicfile.WriteFile(filepath.Join(m.Dir, "qemu.cmdline"), []byte(shellQuote(append([]string{m.Config.QEMU}, args...))+"\n"), 0o644); err != nil {
		return err
	}
	m.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start QEMU: %v", m.Config.Name, err)
	}
	m.cmd = cmd
	m.done = make(chan struct{})
	go func() {
		err := cmd.Wait()
		m.mu.Lock()
		if err != nil {
			m.err = fmt.Errorf("%s: QEMU exited: %v: %s", m.Config.Name, err, firstLine(m.stderr.String()))
		}
		m.mu.Unlock()
		os.WriteFile(filepath.Join(m.Dir, "qemu.stderr"), []byte(m.stderr.String()), 0o644)
		close(m.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			m.Kill()
		case <-m.done:
		}
	}()
	// QEMU either fails fast (bad argument, port taken) or creates its QMP
	// socket; wait for one of the two.
	for {
		select {
		case <-m.done:
			return m.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if c, err := net.Dial("unix", m.QMPSock); err == nil {
			c.Close()
			return nil
		}
	}
}

// Done is closed when QEMU has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Err is QEMU's exit error once Done is closed (nil for a clean exit).
func (m *Machine) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Running reports whether QEMU is still running.
func (m *Machine) Running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// PID is QEMU's process id.
func (m *Machine) PID() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Kill stops QEMU at once and waits for it.
func (m *Machine) Kill() {
	if m.cmd != nil && m.cmd.Process != nil && m.Running() {
		m.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-m.done
}

// Stop asks the guest to power off (ACPI), waits up to grace, then quits
// QEMU through QMP and finally kills it.
func (m *Machine) Stop(grace time.Duration) {
	if !m.Running() {
		return
	}
	if grace > 0 {
		if err := m.QMP("system_powerdown"); err == nil {
			select {
			case <-m.done:
				return
			case <-time.After(grace):
			}
		}
	}
	m.QMP("quit")
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		m.Kill()
	}
}

// Reset is a hard reset (QMP system_reset): the same as pressing reset.
func (m *Machine) Reset() error { return m.QMP("system_reset") }

// QMP runs one argument-less QMP command.
func (m *Machine) QMP(command string) error {
	_, err := QMPCommand(m.QMPSock, command, nil)
	return err
}

// Info is what `pith boot status` and other processes read about a node.
type Info struct {
	Name      string      `json:"name"`
	PID       int         `json:"pid"`
	Firmware  string      `json:"firmware"`
	Accel     string      `json:"accel"`
	Ports     map[int]int `json:"ports"`
	SerialLog string      `json:"serial_log"`
	Console   string      `json:"console"`
	QMP       string      `json:"qmp"`
	Disk      string      `json:"disk"`
	MAC       string      `json:"private_mac,omitempty"`
	IPv4      string      `json:"private_ipv4,omitempty"`
	Started   time.Time   `json:"started"`
	// ExtraDisks are the disks after the boot disk, in order.
	ExtraDisks []DiskInfo `json:"extra_disks,omitempty"`
}

// DiskInfo is an extra disk: the guest's /dev/disk/by-id/virtio-<Serial>.
type DiskInfo struct {
	Serial string `json:"serial"`
	File   string `json:"file"`
	Size   int64  `json:"size"` // bytes; 0 if the file is gone
}

// Info describes the machine.
func (m *Machine) Info() Info {
	info := Info{
		Name: m.Config.Name, PID: m.PID(), Firmware: m.Config.Firmware, Accel: m.Config.Accel.Name,
		Ports: m.Ports, SerialLog: m.SerialLog, Console: m.SerialSock, QMP: m.QMPSock, Disk: m.Disk,
		MAC: m.Config.PrivateMAC, IPv4: m.Config.PrivateIPv4, Started: m.Started,
	}
	for i, f := range m.Config.ExtraDisks {
		d := DiskInfo{Serial: ExtraDiskSerial(i), File: f}
		if st, err := os.Stat(f); err == nil {
			d.Size = st.Size()
		}
		info.ExtraDisks = append(info.ExtraDisks, d)
	}
	return info
}

func (m *Machine) writeInfo() error {
	b, err := json.MarshalIndent(m.Info(), "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(m.Dir, "node.json"), append(b, '\n'), 0o644)
}

// fwCfgFiles are the fw_cfg entries besides the meta-data: cfg.FwCfg and
// the user-data file ud, unless NoUserData.
func (cfg Config) fwCfgFiles(ud string) map[string]string {
	fwcfg := map[string]string{}
	for k, v := range cfg.FwCfg {
		fwcfg[k] = v
	}
	if !cfg.NoUserData {
		fwcfg[FwCfgUserData] = ud
	}
	return fwcfg
}
