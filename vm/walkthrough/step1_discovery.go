package walkthrough

// Step 1: the cluster's CA, a discovery token, and the channel server with
// release N published.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/pki"
)

// Discovery makes the cluster's CA and client certificates (pith cluster
// init), starts the discovery service and the channel server on the
// workstation, and makes a token for a cluster of Nodes members. Release N
// (the image's) is published to stable and N+1 is built in the background
// meanwhile, for step 6.
func (d *Demo) Discovery() (string, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	d.heading(1, "The cluster's CA and a discovery token")
	d.say(`The cluster's certificate authority stays on this workstation. Its admin
certificate may do everything, the reader's only read; each node will get its
own member certificate. With a CA, every KV port speaks only mutual TLS and
lets in only certificates it issued (README, "Security").`)
	if err := d.initCluster(ctx); err != nil {
		return "", err
	}
	d.say(`
A new cluster needs a way for its first machines to find each other. As with
CoreOS's discovery.etcd.io, each node is given one URL; the first %d to register
become the KV's voting members. Here the discovery service runs on this
workstation (pith discovery serve), as does the release channel server the
nodes update from (pith channel serve). Nodes reach both through QEMU's user
network at %s.`, d.cfg.Nodes, GuestHost)
	var err error
	d.discovery, err = d.startServer(ctx, "discovery", "/health", "discovery", "serve",
		"--advertise", GuestDiscoveryURL, "--state", filepath.Join(d.cfg.StateDir, "discovery.json"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(d.repo, 0o755); err != nil {
		return "", err
	}
	d.channel, err = d.startServer(ctx, "channel", "/", "channel", "serve", "--repo", d.repo,
		"--cluster-ca", filepath.Join(d.ClusterDir(), pki.CACertFile))
	if err != nil {
		return "", err
	}
	d.transcript("", "pith "+strings.Join(d.discovery.args, " ")+" &", "")
	d.transcript("", "pith "+strings.Join(d.channel.args, " ")+" &", "")
	args := []string{"discovery", "new", "--size", fmt.Sprint(d.cfg.Nodes), "--server", "http://" + d.discovery.addr}
	out, err := d.runPith(ctx, args...)
	if err != nil {
		return "", err
	}
	d.DiscoveryURL = strings.TrimSpace(out)
	if !strings.HasPrefix(d.DiscoveryURL, GuestDiscoveryURL+"/") {
		return "", fmt.Errorf("pith discovery new printed %q, want a URL under %s", d.DiscoveryURL, GuestDiscoveryURL)
	}
	d.transcript("", "pith "+strings.Join(args, " "), d.DiscoveryURL)
	d.prep = make(chan error, 1)
	go func() { d.prep <- d.prepare() }()
	d.timed("discovery token", start)
	return d.DiscoveryURL, nil
}

// prepare publishes the image's release N on stable (the nodes run it, so
// they find nothing to do) and builds N+1 for step 6.
func (d *Demo) prepare() error {
	start := time.Now()
	if _, err := d.runPith(d.life, "release", "--channel", "stable", "--image", d.cfg.ImageDir, "--key", d.cfg.ReleaseKey, "--repo", d.repo); err != nil {
		return err
	}
	d.prepNote = fmt.Sprintf("%s published on stable in %s", d.Version, time.Since(start).Round(time.Second))
	start = time.Now()
	how, err := d.buildNext(d.life)
	d.prepNote += fmt.Sprintf("; %s %s in %s (pith build, warm cache)", d.Next, how, time.Since(start).Round(time.Second))
	return err
}

func (d *Demo) waitPrepared() error {
	d.prepOnce.Do(func() { d.prepErr = <-d.prep })
	return d.prepErr
}
