package pithinit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"time"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/imds"
)

// The EC2 source's bounds (the network's: netLinkWait, netDHCPWait).
// pithd waits two minutes for the service (agent/datasource.DefaultEC2Wait)
// because it holds the node's SSH keys; here only storage and kernel
// arguments hang on it, and on EC2 the instance's NIC, DHCP and the
// service answer within seconds, so a machine without them boots on after
// about a minute.
const (
	ec2IMDSWait  = 30 * time.Second // for the service's first answer
	ec2IMDSPause = 3 * time.Second  // between tries: one console line each
)

// pithdEC2 is pithd's name of its EC2 source.
const pithdEC2 = "ec2"

// errNoFirstBootConfig is a source's Read error when the source may hold
// the config but could not be read in time (EC2's metadata service did
// not answer): the first boot applies no storage or kernel arguments and
// tries no later source, as pithd may still take this one's.
var errNoFirstBootConfig = errors.New("first boot config unreachable")

// imdsUserData reads the user-data from EC2's metadata service at url as
// pithd does (package imds): ErrNotExist when a service answers that is
// not EC2's, errNoFirstBootConfig (after one console line) when none
// answers within wait, any other failure as is (the boot stops).
func imdsUserData(ctx context.Context, printf func(string, ...any), url string, wait, pause time.Duration) ([]byte, string, error) {
	const timeout = 2 * time.Second
	h := imds.HTTP{
		Client:  &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: timeout}).DialContext}},
		Timeout: timeout, Attempts: 3, Max: cloudconfig.MaxSize,
	}
	c := &imds.Client{URL: url, Do: h.Do, Wait: wait, Pause: pause, OnWait: func(err error, left time.Duration) {
		printf("Ignition: waiting for the EC2 metadata service at %s (%v left): %v", url, left.Round(time.Second), err)
	}}
	s, err := c.Open(ctx)
	switch {
	case errors.Is(err, imds.ErrNoService):
		printf("Ignition: the EC2 metadata service did not answer at %s within %v: booting on without the instance's storage and kernel arguments (pithd reads its user-data later and refuses storage or kernel arguments there)", url, wait)
		return nil, "", errNoFirstBootConfig
	case errors.Is(err, imds.ErrNotEC2):
		return nil, "", fmt.Errorf("%w: %v at %s", fs.ErrNotExist, err, url)
	case err != nil:
		return nil, "", fmt.Errorf("EC2 metadata service at %s: %w", url, err)
	}
	ud, err := s.UserData(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("EC2 metadata service at %s: %w", url, err)
	}
	return ud, "EC2 metadata service (instance " + s.InstanceID + ")", nil
}

// ec2Reader is the EC2 source's Read: it reads the user-data through the
// first Ethernet NIC to get a DHCP lease (withNIC). No NIC or no lease within the bounds is
// one console line and no config, as an unanswered service.
func ec2Reader(printf func(string, ...any)) func() ([]byte, string, error) {
	return func() ([]byte, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), netLinkWait+netDHCPWait+ec2IMDSWait+time.Minute)
		defer cancel()
		noNet := func(err error) error {
			printf("Ignition: no network for the EC2 metadata service (%v): booting on without the instance's storage and kernel arguments", err)
			return errNoFirstBootConfig
		}
		return withNIC(ctx, printf, "the EC2 metadata service", noNet, func() ([]byte, string, error) {
			return imdsUserData(ctx, printf, imds.DefaultURL, ec2IMDSWait, ec2IMDSPause)
		})
	}
}
