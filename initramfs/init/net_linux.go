package pithinit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
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

// firstBootNIC is the NIC a first-boot network source brought up.
type firstBootNIC struct{ link netlink.Link }

func (n *firstBootNIC) name() string { return n.link.Attrs().Name }

// withNIC brings the first Ethernet NIC up with DHCPv4 for what (a
// console name: "the EC2 metadata service"), runs read on it, and takes
// the NIC down again, addresses and routes gone, whatever happened, so
// systemd-networkd finds it as the kernel made it. When the NIC does not
// come up, noNet says what that means for the source (read is not run).
func withNIC(ctx context.Context, printf func(string, ...any), what string, noNet func(error) error, read func() ([]byte, string, error)) ([]byte, string, error) {
	nic, err := netUp(ctx, printf, what)
	var ud []byte
	where := ""
	if err != nil {
		err = noNet(err)
	} else {
		ud, where, err = read()
	}
	if nic != nil {
		if derr := nic.down(); derr != nil {
			return nil, "", storageStop("taking "+nic.name()+" down after "+what, derr)
		}
		printf("Ignition: %s is down again: no address, no route", nic.name())
	}
	return ud, where, err
}

// firstEthernet picks the NIC a network source uses: the lowest-indexed
// Ethernet device (not a bridge, bond or veth), which is an EC2
// instance's primary ENI, or a PXE-booted machine's first port, as the
// kernel found it first.
func firstEthernet(links []netlink.Link) netlink.Link {
	var eth []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if l.Type() == "device" && a.EncapType == "ether" && len(a.HardwareAddr) == 6 {
			eth = append(eth, l)
		}
	}
	if len(eth) == 0 {
		return nil
	}
	sort.Slice(eth, func(i, j int) bool { return eth[i].Attrs().Index < eth[j].Attrs().Index })
	return eth[0]
}

// netUp waits for an Ethernet NIC and gets it a DHCPv4 lease with
// u-root's client for what, a console line per wait. The NIC is returned
// also with an error once it was touched, for down.
func netUp(ctx context.Context, printf func(string, ...any), what string) (*firstBootNIC, error) {
	var link netlink.Link
	for deadline := time.Now().Add(netLinkWait); ; {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("listing network links: %w", err)
		}
		if link = firstEthernet(links); link != nil {
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("no Ethernet NIC appeared within %v", netLinkWait)
		}
		printf("Ignition: waiting for an Ethernet NIC for %s (%v left)", what, left.Round(time.Second))
		time.Sleep(time.Second)
	}
	n := &firstBootNIC{link}
	// The lease's Configure writes resolv.conf, in the initramfs only.
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(netDHCPWait); ; {
		lease, err := dhcp4(ctx, link)
		if lease != nil {
			if err := lease.Configure(); err != nil {
				return n, fmt.Errorf("configuring %s's DHCPv4 lease: %w", n.name(), err)
			}
			m, _ := lease.Message()
			printf("Ignition: %s is up for %s: %s from DHCPv4 server %s", n.name(), what, m.YourIPAddr, m.ServerIdentifier())
			return n, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return n, fmt.Errorf("no DHCPv4 lease on %s within %v: %v", n.name(), netDHCPWait, err)
		}
		printf("Ignition: waiting for a DHCPv4 lease on %s (%v left): %v", n.name(), left.Round(time.Second), err)
	}
}

// dhcp4 is one DHCPv4 exchange on link (u-root's dhclient brings it up).
// The client runs on its own goroutine, abandoned if it overruns its
// bound: its transaction id waits for the kernel's RNG (not ready early
// on a machine without RDRAND or a virtio-rng) before its own timeouts
// start, and the boot must not hang on it. An abandoned one ends when
// down takes the link away.
func dhcp4(ctx context.Context, link netlink.Link) (dhclient.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, netDHCPTry)
	defer cancel()
	type result struct {
		lease dhclient.Lease
		err   error
	}
	done := make(chan result, 1)
	go func() {
		err := errors.New("the link did not come up")
		for r := range dhclient.SendRequests(ctx, []netlink.Link{link}, true, false, dhclient.Config{Timeout: 3 * time.Second, Retries: 2, LogLevel: dhclient.LogSummary}, 5*time.Second) {
			if r.Err == nil && r.Lease != nil {
				done <- result{r.Lease, nil}
				return
			}
			err = r.Err
		}
		done <- result{nil, err}
	}()
	select {
	case r := <-done:
		return r.lease, r.err
	case <-time.After(netDHCPTry + 2*time.Second):
		return nil, fmt.Errorf("the DHCP client did not return within %v", netDHCPTry)
	}
}

// down flushes the NIC's IPv4 addresses and its routes and sets it down
// (which drops its IPv6 addresses), then checks nothing is left.
func (n *firstBootNIC) down() error {
	addrs, err := netlink.AddrList(n.link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing %s's addresses: %w", n.name(), err)
	}
	for _, a := range addrs {
		if err := netlink.AddrDel(n.link, &a); err != nil {
			return fmt.Errorf("removing %s from %s: %w", a.IPNet, n.name(), err)
		}
	}
	if err := n.flushRoutes(); err != nil {
		return err
	}
	if err := netlink.LinkSetDown(n.link); err != nil {
		return fmt.Errorf("setting %s down: %w", n.name(), err)
	}
	if err := n.flushRoutes(); err != nil {
		return err
	}
	if addrs, err := netlink.AddrList(n.link, netlink.FAMILY_ALL); err != nil || len(addrs) > 0 {
		return fmt.Errorf("%s still has addresses %v after it was set down (%v)", n.name(), addrs, err)
	}
	return nil
}

// flushRoutes removes the NIC's routes from every table.
func (n *firstBootNIC) flushRoutes() error {
	filter := &netlink.Route{LinkIndex: n.link.Attrs().Index, Table: unix.RT_TABLE_UNSPEC}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("listing %s's routes: %w", n.name(), err)
	}
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing route %s from %s: %w", r, n.name(), err)
		}
	}
	return nil
}
