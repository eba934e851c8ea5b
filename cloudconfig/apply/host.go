package apply

// The host's identity: hostname (KernelHost), /etc/hosts, the OEM's
// os-release and /etc/environment with the datasource's addresses.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
	"golang.org/x/sys/unix"
)

// KernelHost sets the hostname with sethostname(2). systemd-hostnamed
// reads /etc/hostname, which the applier writes first.
type KernelHost struct{}

// SetHostname implements Host.
func (KernelHost) SetHostname(name string) error { return unix.Sethostname([]byte(name)) }

func (a *Applier) setHostname(name string) error {
	p, err := a.path("/etc/hostname")
	if err != nil {
		return err
	}
	if _, err := a.write(p, []byte(name+"\n"), 0o644, 0, 0); err != nil {
		return fmt.Errorf("write /etc/hostname: %w", err)
	}
	if a.Host != nil {
		if err := a.Host.SetHostname(name); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	a.log().Info("hostname set", "hostname", name)
	return nil
}

// writeEtcHosts is manage_etc_hosts: localhost: the hostname resolves to
// the loopback address, as coreos-cloudinit wrote it.
func (a *Applier) writeEtcHosts(hostname string) error {
	if hostname == "" {
		if b, err := os.ReadFile(filepath.Join(a.Root, "etc/hostname")); err == nil {
			hostname = strings.TrimSpace(string(b))
		}
	}
	if hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		hostname = h
	}
	short, _, _ := strings.Cut(hostname, ".")
	names := hostname
	if short != hostname {
		names += " " + short
	}
	content := fmt.Sprintf("# Written by pithd from user-data (manage_etc_hosts: localhost).\n127.0.0.1 %s localhost\n::1 %s localhost ip6-localhost ip6-loopback\n", names, names)
	p, err := a.path("/etc/hosts")
	if err != nil {
		return err
	}
	_, err = a.write(p, []byte(content), 0o644, 0, 0)
	return err
}

func (a *Applier) writeOEMRelease(o cloudconfig.OEM) error {
	var b strings.Builder
	for _, kv := range [][2]string{{"ID", o.ID}, {"VERSION_ID", o.VersionID}, {"NAME", o.Name}, {"HOME_URL", o.HomeURL}, {"BUG_REPORT_URL", o.BugReportURL}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "%s=%q\n", kv[0], kv[1])
		}
	}
	p, err := a.path("/etc/oem-release")
	if err != nil {
		return err
	}
	_, err = a.write(p, []byte(b.String()), 0o644, 0, 0)
	return err
}

// WriteEnvironment keeps the COREOS_*_IPV4/IPV6 lines of /etc/environment
// (and PITH_* twins) in step with the datasource's addresses, as CoreOS
// did, for units with EnvironmentFile=/etc/environment. Other lines are
// kept.
func (a *Applier) WriteEnvironment(addrs cloudconfig.Addresses) error {
	p, err := a.path("/etc/environment")
	if err != nil {
		return err
	}
	old, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	vars := []struct {
		suffix string
		ip     []byte
	}{{"PRIVATE_IPV4", addrs.PrivateIPv4}, {"PUBLIC_IPV4", addrs.PublicIPv4}, {"PRIVATE_IPV6", addrs.PrivateIPv6}, {"PUBLIC_IPV6", addrs.PublicIPv6}}
	ours := map[string]bool{}
	for _, v := range vars {
		ours["COREOS_"+v.suffix] = true
		ours["PITH_"+v.suffix] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(string(old), "\n") {
		name, _, _ := strings.Cut(l, "=")
		if l == "" || ours[strings.TrimSpace(name)] {
			continue
		}
		b.WriteString(l + "\n")
	}
	n := 0
	for _, v := range vars {
		if len(v.ip) == 0 {
			continue
		}
		ip := net.IP(v.ip).String()
		fmt.Fprintf(&b, "COREOS_%s=%s\nPITH_%s=%s\n", v.suffix, ip, v.suffix, ip)
		n++
	}
	if n == 0 && len(old) == 0 {
		return nil
	}
	_, err = a.write(p, []byte(b.String()), 0o644, 0, 0)
	return err
}
