package walkthrough

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pith-os/pith/vm"
)

// Addresses the guests use for the workstation's services. The nodes'
// user network is restrict=on (no way to the host), so each address is a
// QEMU guestfwd rule whose connections a relay carries to the service's
// 127.0.0.1 listener.
const (
	GuestHost         = "10.0.2.100"
	GuestDiscoveryURL = "http://" + GuestHost + ":8087"
	GuestChannelURL   = "http://" + GuestHost + ":8080/"
)

// ContainerImage is the tag the offline container image is imported as,
// and ContainerTarball where the walkthrough copies it on each node.
const (
	ContainerImage   = "pith-demo/hello:1"
	ContainerTarball = "/var/lib/pith-demo/hello.tar.gz"
)

// UserData is the cloud-config node boots with: what a CoreOS user writes
// for a cluster (a discovery URL, $private_ipv4, the stable channel, the
// etcd-lock reboot strategy), over TLS: the URLs are https:// and the
// node's member part from `pith cluster issue` (Member) adds its
// certificate, key and the cluster CA with pith.kv.tls. Two things serve
// this playground: a networkd file for the private network (it has no
// DHCP), and a path unit that imports the container image as soon as the
// walkthrough has copied it (no registry is reachable from the nodes).
// Every node's user-data is the same but for its Member.
func UserData(discoveryURL string, nodes int, m Member) string {
	var macs []string
	for i := 0; i < nodes; i++ {
		macs = append(macs, privateMAC(i))
	}
	files := ""
	if m.Files != "" {
		files = "  # This node's member certificate and key and the cluster CA, from\n" +
			"  # pith cluster issue: the node's identity on the KV's two ports.\n" + m.Files
	}
	return `#cloud-config
write_files:
  # The private network between the nodes has no DHCP: each node takes
  # the address its metadata gives it.
  - path: /etc/systemd/network/10-private.network
    content: |
      [Match]
      MACAddress=` + strings.Join(macs, " ") + `
      [Network]
      Address=$private_ipv4/24
  # Containers use the host's network: dockerd need not set up iptables
  # or a bridge (which takes minutes without KVM).
  - path: /etc/docker/daemon.json
    content: |
      {"iptables": false, "bridge": "none"}
` + files + `coreos:
  etcd2:
    name: "%H"
    discovery: ` + discoveryURL + `
    advertise-client-urls: https://$private_ipv4:2379
    initial-advertise-peer-urls: https://$private_ipv4:2380
    listen-client-urls: https://0.0.0.0:2379
    listen-peer-urls: https://0.0.0.0:2380
    # Software-emulated guests stall for over a second at times: etcd's
    # 100 ms / 1 s defaults would elect a new leader every few seconds.
    heartbeat-interval: 500
    election-timeout: 5000
  fleet:
    public-ip: $private_ipv4
    metadata: role=demo
  update:
    group: stable
    server: ` + GuestChannelURL + `
    reboot-strategy: etcd-lock
  units:
    - name: systemd-networkd.service
      command: restart
    - name: pith-demo-images.path
      command: start
      content: |
        [Path]
        PathExists=` + ContainerTarball + `
    - name: pith-demo-images.service
      content: |
        [Unit]
        Description=Load the offline container image
        Requires=docker.socket
        After=docker.socket
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        TimeoutStartSec=15min
        ExecStart=/bin/sh -c '/usr/bin/docker image inspect ` + ContainerImage + ` >/dev/null 2>&1 || /usr/bin/docker import ` + ContainerTarball + ` ` + ContainerImage + `'
` + m.Pith
}

// Member is a node's own part of its user-data, cut from the cloud-config
// `pith cluster issue` prints: its write_files entries (the cluster CA, the
// member certificate and its 0600 key) and the pith: section whose kv.tls
// turns mutual TLS on.
type Member struct {
	Files string // write_files list entries, indented as in the list
	Pith  string // the top-level pith: section
}

// ParseIssued splits `pith cluster issue`'s cloud-config into its parts.
func ParseIssued(cc string) (Member, error) {
	const head = "#cloud-config\nwrite_files:\n"
	files, pith, ok := strings.Cut(strings.TrimPrefix(cc, head), "\npith:\n")
	if !strings.HasPrefix(cc, head) || !ok || !strings.HasPrefix(files, "  - path: ") {
		return Member{}, fmt.Errorf("pith cluster issue printed no write_files list and pith: section:\n%.200s", cc)
	}
	return Member{Files: files + "\n", Pith: "pith:\n" + pith}, nil
}

// elidePEM shortens each PEM block of s to its first and last lines, for
// showing a user-data without its key.
func elidePEM(s string) string {
	lines := strings.Split(s, "\n")
	var out []string
	in := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "-----BEGIN "):
			in = true
			out = append(out, l, strings.Repeat(" ", len(l)-len(t))+"...")
		case strings.HasPrefix(t, "-----END "):
			in = false
			out = append(out, l)
		case !in:
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// privateMAC is the private NIC's MAC of the i-th node (vm.StartCluster's).
func privateMAC(i int) string { return fmt.Sprintf("52:54:00:77:00:%02x", i+1) }

// privateIP is the i-th node's private address without the prefix length.
func privateIP(i int) string { return strings.SplitN(vm.PrivateIPv4(i), "/", 2)[0] }

// MongoUnit is the seed's mongo@.service template, with an offline image
// standing in for MongoDB: an HTTP server on :27017 that says which
// instance answers on which host. Conflicts keeps two instances apart.
const MongoUnit = `[Unit]
Description=MongoDB stand-in %i
After=docker.service pith-demo-images.service
Requires=docker.service pith-demo-images.service

[Service]
TimeoutStartSec=15min
ExecStartPre=-/usr/bin/docker kill mongo-%i
ExecStartPre=-/usr/bin/docker rm mongo-%i
ExecStart=/usr/bin/docker run --rm --name mongo-%i --network host ` + ContainerImage + ` /hello -addr :27017 -msg "mongo@%i on %H"
ExecStop=/usr/bin/docker stop mongo-%i

[X-Fleet]
Conflicts=mongo@*.service
`

// AnnounceUnit runs on every machine (Global=true) and keeps a key with a
// TTL in the KV for its host: etcd and fleet together, as CoreOS's
// sidekick units did. A machine that goes away drops out after the TTL.
const AnnounceUnit = `[Unit]
Description=Announce this machine in the KV

[Service]
ExecStart=/bin/sh -c 'while :; do pithctl kv set --ttl 60 /announce/%H %m >/dev/null; sleep 20; done'

[X-Fleet]
Global=true
`

// ContainerTarGz packs a static binary as the whole root filesystem of a
// container image, as /hello: the tarball `docker import` takes.
func ContainerTarGz(binary string) ([]byte, error) {
	b, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("container binary: %w (make bin builds it as pith-hello)", err)
	}
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(gz)
	hdr := &tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(b); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
