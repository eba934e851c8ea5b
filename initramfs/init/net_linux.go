package pithinit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The first boot's network bounds (EC2's metadata service, a config
// URL): on a cloud or a PXE LAN the NIC and a lease come within seconds.
const (
	netLinkWait = 15 * time.Second // for the NIC's driver to show it
	netDHCPWait = 30 * time.Second // for a DHCPv4 lease
	netDHCPTry  = 10 * time.Second // one DHCP exchange (nclient4: 3 s, then 6 s)
)

// withNIC brings every Ethernet NIC up with DHCPv4 for what (a console
// name: "the EC2 metadata service"), runs read on the first to get a
// lease, and takes them all down again, addresses and routes gone,
// whatever happened, so systemd-networkd finds them as the kernel made
// them. When no NIC comes up, noNet says what that means for the source
// (read is not run).
func withNIC(ctx context.Context, printf func(string, ...any), what string, noNet func(error) error, read func() ([]byte, string, error)) ([]byte, string, error) {
	nics, err := netUp(ctx, printf, what)
	var ud []byte
	where := ""
	if err != nil {
		err = noNet(err)
	} else {
		ud, where, err = read()
	}
	for _, l := range nics {
		if derr := nicDown(l); derr != nil {
			return nil, "", storageStop("taking "+l.Attrs().Name+" down after "+what, derr)
		}
		printf("Ignition: %s is down again: no address, no route", l.Attrs().Name)
	}
	return ud, where, err
}

// ethernetNICs are the NICs a network source tries, lowest index first:
// Ethernet devices (not bridges, bonds or veths). All of them, not the
// first alone: the order the kernel found them in says nothing of which
// one has a DHCP server (an EC2 instance with several ENIs, a machine with
// a cluster port probed before its uplink).
func ethernetNICs(links []netlink.Link) []netlink.Link {
	var eth []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if l.Type() == "device" && a.EncapType == "ether" && len(a.HardwareAddr) == 6 {
			eth = append(eth, l)
		}
	}
	sort.Slice(eth, func(i, j int) bool { return eth[i].Attrs().Index < eth[j].Attrs().Index })
	return eth
}

// netUp waits for Ethernet NICs and gets one of them a DHCPv4 lease with
// u-root's client for what, a console line per wait. The NICs are
// returned also with an error once they were touched, for nicDown.
func netUp(ctx context.Context, printf func(string, ...any), what string) ([]netlink.Link, error) {
	var nics []netlink.Link
	for deadline := time.Now().Add(netLinkWait); ; {
		links, err := netlink.LinkList()
		if err != nil {
			return nics, fmt.Errorf("listing network links: %w", err)
		}
		if nics = ethernetNICs(links); len(nics) > 0 {
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nics, fmt.Errorf("no Ethernet NIC appeared within %v", netLinkWait)
		}
		printf("Ignition: waiting for an Ethernet NIC for %s (%v left)", what, left.Round(time.Second))
		time.Sleep(time.Second)
	}
	// The lease's Configure writes resolv.conf, in the initramfs only.
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return nics, err
	}
	names := nicNames(nics)
	for deadline := time.Now().Add(netDHCPWait); ; {
		lease, err := dhcp4(ctx, nics)
		if lease != nil {
			a := lease.Link().Attrs()
			if err := lease.Configure(); err != nil {
				return nics, fmt.Errorf("configuring %s's DHCPv4 lease: %w", a.Name, err)
			}
			m, _ := lease.Message()
			printf("Ignition: %s (%s) is up for %s: %s from DHCPv4 server %s", a.Name, a.HardwareAddr, what, m.YourIPAddr, m.ServerIdentifier())
			return nics, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nics, fmt.Errorf("no DHCPv4 lease on %s within %v: %v", names, netDHCPWait, err)
		}
		printf("Ignition: waiting for a DHCPv4 lease on %s (%v left): %v", names, left.Round(time.Second), err)
	}
}

// nicNames lists the links' names for the console: "eth0, eth1".
func nicNames(links []netlink.Link) string {
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.Attrs().Name
	}
	return strings.Join(names, ", ")
}

// dhcp4 is one DHCPv4 exchange on each of links at once (u-root's
// dhclient brings them up); the first lease wins and ends the others,
// and dhcp4 returns once they have ended, so none brings its NIC up
// again after nicDown. The client runs on its own goroutine, abandoned
// if it overruns its bound: its transaction id waits for the kernel's
// RNG (not ready early on a machine without RDRAND or a virtio-rng)
// before its own timeouts start, and the boot must not hang on it.
func dhcp4(ctx context.Context, links []netlink.Link) (dhclient.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, netDHCPTry)
	defer cancel()
	type result struct {
		lease dhclient.Lease
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var (
			lease dhclient.Lease
			errs  []string
		)
		for r := range dhclient.SendRequests(ctx, links, true, false, dhclient.Config{Timeout: 3 * time.Second, Retries: 2, LogLevel: dhclient.LogSummary}, 5*time.Second) {
			switch {
			case lease != nil:
			case r.Err == nil && r.Lease != nil:
				lease = r.Lease
				cancel()
			default:
				errs = append(errs, fmt.Sprintf("%s: %v", r.Interface.Attrs().Name, r.Err))
			}
		}
		if lease != nil {
			done <- result{lease, nil}
			return
		}
		if len(errs) == 0 {
			errs = append(errs, "no link came up")
		}
		done <- result{nil, errors.New(strings.Join(errs, "; "))}
	}()
	select {
	case r := <-done:
		return r.lease, r.err
	case <-time.After(netDHCPTry + 2*time.Second):
		return nil, fmt.Errorf("the DHCP client did not return within %v", netDHCPTry)
	}
}

// nicDown flushes a NIC's IPv4 addresses and its routes and sets it down
// (which drops its IPv6 addresses), then checks nothing is left.
func nicDown(link netlink.Link) error {
	name := link.Attrs().Name
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing %s's addresses: %w", name, err)
	}
	for _, a := range addrs {
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("removing %s from %s: %w", a.IPNet, name, err)
		}
	}
	if err := flushRoutes(link); err != nil {
		return err
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("setting %s down: %w", name, err)
	}
	if err := flushRoutes(link); err != nil {
		return err
	}
	if addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL); err != nil || len(addrs) > 0 {
		return fmt.Errorf("%s still has addresses %v after it was set down (%v)", name, addrs, err)
	}
	return nil
}

// flushRoutes removes a NIC's routes from every table.
func flushRoutes(link netlink.Link) error {
	name := link.Attrs().Name
	filter := &netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_UNSPEC}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("listing %s's routes: %w", name, err)
	}
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing route %s from %s: %w", r, name, err)
		}
	}
	return nil
}
