package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/vm"
)

// clusterUserData is what a CoreOS user would write for a three-node
// cluster with static peers: one file for every node, the node's own
// address filled in through $private_ipv4 and its name through systemd's
// %H (the hostname the datasource gives, node1..node3). The private NIC is
// configured by a networkd file, since the test network has no DHCP. The
// container image the scheduled units run is copied in by the test and
// imported offline by a oneshot unit (started by a path unit as soon as
// the file lands, so dockerd's slow first start under TCG overlaps the
// KV checks). Containers use the host network, so dockerd is told to
// leave iptables and its bridge alone, which also makes it start faster.
func clusterUserData(t *testing.T, nodes int) string {
	var macs, peers []string
	for i := 0; i < nodes; i++ {
		macs = append(macs, fmt.Sprintf("52:54:00:77:00:%02x", i+1))
		ip := strings.SplitN(vm.PrivateIPv4(i), "/", 2)[0]
		peers = append(peers, fmt.Sprintf("%s=http://%s:2380", vm.NodeName(i), ip))
	}
	return `#cloud-config
write_files:
  - path: /etc/systemd/network/10-private.network
    content: |
      # The private network between the nodes (no DHCP there).
      [Match]
      MACAddress=` + strings.Join(macs, " ") + `
      [Network]
      Address=$private_ipv4/24
` + dockerDaemonJSON + `coreos:
  etcd2:
    name: "%H"
    initial-cluster-token: pith-e2e
    initial-cluster: ` + strings.Join(peers, ",") + `
    initial-advertise-peer-urls: http://$private_ipv4:2380
    advertise-client-urls: http://$private_ipv4:2379
    listen-peer-urls: http://0.0.0.0:2380
    listen-client-urls: http://0.0.0.0:2379
    # Under TCG a guest often stalls for over a second: etcd's 100 ms /
    # 1 s defaults made the leader change every few seconds.
    heartbeat-interval: 500
    election-timeout: 5000
  fleet:
    public-ip: $private_ipv4
    metadata: role=e2e
  units:
    - name: systemd-networkd.service
      command: restart
    - name: pith-e2e-images.path
      command: start
      content: |
        [Path]
        PathExists=` + helloImagePath + `
    - name: pith-e2e-images.service
      content: |
        [Unit]
        Description=Load the offline container images
        Requires=docker.socket
        After=docker.socket
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        TimeoutStartSec=15min
        ExecStart=/bin/sh -c '/usr/bin/docker image inspect ` + helloImageName + ` >/dev/null 2>&1 || /usr/bin/docker import ` + helloImagePath + ` ` + helloImageName + `'
`
}

// mongoUnit is the seed walkthrough's template, with the offline image.
const mongoUnit = `[Unit]
Description=MongoDB stand-in %i
After=docker.service pith-e2e-images.service
Requires=docker.service pith-e2e-images.service

[Service]
TimeoutStartSec=15min
ExecStartPre=-/usr/bin/docker kill mongo-%i
ExecStartPre=-/usr/bin/docker rm mongo-%i
ExecStart=/usr/bin/docker run --rm --name mongo-%i --network host ` + helloImageName + ` /hello -addr :27017 -msg "mongo@%i on %H"
ExecStop=/usr/bin/docker stop mongo-%i

[X-Fleet]
Conflicts=mongo@*.service
`

// globalUnit runs on every machine.
const globalUnit = `[Unit]
Description=On every machine

[Service]
ExecStart=/bin/sh -c 'echo global on %H; exec sleep infinity'

[X-Fleet]
Global=true
`

// upTimes is when a node accepted SSH, and when its console showed the
// login prompt (0 if it never did), measured from its QEMU's start.
type upTimes struct{ login, ssh time.Duration }

// upAll waits for every node's SSH at once, so each node's figures are its
// own and not the sum of waits. SSH, not the console's login prompt, is
// what counts: under heavy load systemd may time out waiting for
// /dev/ttyS0 (90 s) and never start the serial getty.
func upAll(t *testing.T, nodes []*Node) []upTimes {
	t.Helper()
	res := make([]upTimes, len(nodes))
	errs := make(chan error, len(nodes))
	for i, n := range nodes {
		go func() {
			ctx, cancel := n.ctx()
			defer cancel()
			con := vm.Console{Path: n.M.SerialLog}
			for {
				if res[i].login == 0 {
					if b, _ := con.ReadFrom(0); strings.Contains(string(b), LoginMarker) {
						res[i].login = n.Since()
					}
				}
				r, err := vm.RunSSH(ctx, n.M.Ports[22], vm.DefaultUser, n.c.VM.Key, "true")
				if err == nil && r.ExitStatus == 0 {
					res[i].ssh = n.Since()
					errs <- nil
					return
				}
				select {
				case <-ctx.Done():
					errs <- fmt.Errorf("%s: SSH never worked: %v", n.Name, err)
					return
				case <-n.M.Done():
					errs <- fmt.Errorf("%s: QEMU exited: %v", n.Name, n.M.Err())
					return
				case <-time.After(2 * time.Second):
				}
			}
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		n.MarkConsole()
	}
	return res
}

// unitRow is a line of `pithctl list-units`.
type unitRow struct{ unit, machine, ip, active string }

func listUnits(n *Node) ([]unitRow, string, bool) {
	out, ok := n.try("sudo pithctl list-units --no-legend --full --fields unit,machine,active")
	if !ok {
		return nil, out, false
	}
	var rows []unitRow
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		r := unitRow{unit: f[0], machine: f[1]}
		if id, ip, ok := strings.Cut(f[1], "/"); ok {
			r.machine, r.ip = id, ip
		}
		if len(f) > 2 {
			r.active = f[2]
		}
		rows = append(rows, r)
	}
	return rows, out, true
}

// nodeByIP maps a private address back to the test's node.
func nodeByIP(c *Cluster, ip string) *Node {
	for i, n := range c.Nodes {
		if strings.SplitN(vm.PrivateIPv4(i), "/", 2)[0] == ip {
			return n
		}
	}
	return nil
}

// TestCluster (issues 5, 6, 10): three nodes on the private network from
// one CoreOS-style cloud-config form a cluster, share keys, and run the
// fleet walkthrough with real systemd: a template with Conflicts on
// different machines, a global unit everywhere, and failover when the
// machine running mongo@1 is switched off.
func TestCluster(t *testing.T) {
	const nodes = 3
	ud := clusterUserData(t, nodes)
	c := Boot(t, Options{Nodes: nodes, UserData: writeUserData(t, "user-data", ud)})
	start := time.Now()
	ups := upAll(t, c.Nodes)
	for i, u := range ups {
		t.Logf("MEASURE %s: qemu-start->login-prompt=%s qemu-start->ssh-ready=%s", c.Nodes[i].Name, u.login.Round(100*time.Millisecond), u.ssh.Round(100*time.Millisecond))
	}
	n1, n3 := c.Nodes[0], c.Nodes[2]
	for _, n := range c.Nodes {
		if st := n.Run("pithctl userdata"); !strings.Contains(st, "status:     applied") {
			t.Fatalf("%s: user-data not applied:\n%s", n.Name, st)
		}
		n.loadHelloImage(t)
	}

	// The KV cluster: three members, one leader.
	var members string
	n1.Poll("3 members with a leader", time.Second, func() (bool, string) {
		out, ok := n1.try("pithctl member list")
		members = out
		return ok && strings.Count(out, "name=") == nodes && strings.Count(out, "isLeader=true") == 1, out
	})
	t.Logf("MEASURE cluster formed (3 members, leader) %s after the first QEMU start, %s after the last node accepted SSH",
		time.Since(start).Round(100*time.Millisecond), time.Since(start.Add(maxSSH(ups))).Round(100*time.Millisecond))
	t.Logf("pithctl member list:\n%s", members)
	for i := 0; i < nodes; i++ {
		name, ip := vm.NodeName(i), strings.SplitN(vm.PrivateIPv4(i), "/", 2)[0]
		if want := "name=" + name + " peerURLs=http://" + ip + ":2380 clientURLs=http://" + ip + ":2379"; !strings.Contains(members, want) {
			t.Errorf("member list lacks %q", want)
		}
	}

	n1.Run("pithctl kv set /message hello")
	n3.Poll("/message on node3", time.Second, func() (bool, string) {
		out, ok := n3.try("pithctl kv get /message")
		return ok && out == "hello", out
	})

	// Machines of the scheduler.
	var machines string
	n1.Poll("3 machines", time.Second, func() (bool, string) {
		out, ok := n1.try("sudo pithctl list-machines --no-legend --full")
		machines = out
		return ok && len(strings.Split(out, "\n")) == nodes, out
	})
	t.Logf("pithctl list-machines:\n%s", machines)
	for i := 0; i < nodes; i++ {
		ip := strings.SplitN(vm.PrivateIPv4(i), "/", 2)[0]
		id := c.Nodes[i].Run("cat /etc/machine-id")
		if !strings.Contains(machines, id) || !strings.Contains(machines, ip) || !strings.Contains(machines, "role=e2e") {
			t.Errorf("list-machines lacks %s (%s, %s, role=e2e)", c.Nodes[i].Name, id, ip)
		}
	}

	// The walkthrough: submit the template and a global unit, start them.
	n1.Run("mkdir -p units && cat > 'units/mongo@.service' <<'EOF'\n" + mongoUnit + "EOF\ncat > units/global.service <<'EOF'\n" + globalUnit + "EOF")
	n1.Run("cd units && sudo pithctl submit mongo@.service global.service")
	t.Logf("pithctl list-unit-files:\n%s", n1.Run("sudo pithctl list-unit-files"))
	startT := time.Now()
	if r := n1.Exec("sudo pithctl start mongo@1 mongo@2 global.service"); r.ExitStatus != 0 {
		t.Fatalf("pithctl start exited %d:\n%s%s\nlist-units:\n%s", r.ExitStatus, r.Stdout, r.Stderr, n1.Exec("sudo pithctl list-units").Stdout)
	}
	t.Logf("MEASURE pithctl start mongo@1 mongo@2 global.service returned after %s", time.Since(startT).Round(100*time.Millisecond))

	var rows []unitRow
	n1.Poll("mongo@1, mongo@2 and global.service x3 active", 2*time.Second, func() (bool, string) {
		rs, out, ok := listUnits(n1)
		rows = rs
		active := 0
		for _, r := range rs {
			if r.active == "active" {
				active++
			}
		}
		return ok && len(rs) == 2+nodes && active == len(rs), out
	})
	t.Logf("pithctl list-units:\n%s", n1.Run("sudo pithctl list-units"))
	where := map[string]*Node{}
	globals := map[*Node]bool{}
	for _, r := range rows {
		n := nodeByIP(c, r.ip)
		if n == nil {
			t.Fatalf("list-units: %s on %s/%s, which is none of the nodes", r.unit, r.machine, r.ip)
		}
		if r.unit == "global.service" {
			globals[n] = true
		} else {
			where[r.unit] = n
		}
	}
	m1, m2 := where["mongo@1.service"], where["mongo@2.service"]
	if m1 == nil || m2 == nil || m1 == m2 {
		t.Fatalf("mongo@1 on %v and mongo@2 on %v: want two different machines", m1, m2)
	}
	if len(globals) != nodes {
		t.Errorf("global.service runs on %d machines, want all %d", len(globals), nodes)
	}
	// What systemd itself says on each machine, and the containers answer.
	for _, n := range c.Nodes {
		if got, _ := n.try("systemctl is-active global.service"); got != "active" {
			t.Errorf("%s: global.service is %q", n.Name, got)
		}
	}
	for unit, n := range where {
		checkMongo(t, n, strings.TrimSuffix(unit, ".service"))
	}
	var spare *Node
	for _, n := range c.Nodes {
		if n != m1 && n != m2 {
			spare = n
		}
	}
	if got, _ := spare.try("systemctl is-active mongo@1.service mongo@2.service"); got != "inactive\ninactive" {
		t.Errorf("%s runs no mongo by the scheduler, but systemctl says %q", spare.Name, got)
	}

	// Failover: switch off the machine running mongo@1. Conflicts leaves
	// only the spare machine for it.
	t.Logf("stopping %s, which runs mongo@1", m1.Name)
	killed := time.Now()
	if err := m1.M.QMP("quit"); err != nil {
		m1.M.Kill()
	}
	<-m1.M.Done()
	spare.Poll("mongo@1 rescheduled and active on "+spare.Name, time.Second, func() (bool, string) {
		out, ok := spare.try("systemctl is-active mongo@1.service")
		return ok && out == "active", out
	})
	// Includes the agent TTL (5 s by default) and starting the container.
	t.Logf("MEASURE reschedule: mongo@1 active on %s %s after %s was switched off",
		spare.Name, time.Since(killed).Round(100*time.Millisecond), m1.Name)
	var out string
	spare.Poll("list-units showing mongo@1 on "+spare.Name, time.Second, func() (bool, string) {
		rs, o, ok := listUnits(spare)
		out = o
		for _, r := range rs {
			if r.unit == "mongo@1.service" {
				return ok && nodeByIP(c, r.ip) == spare && r.active == "active", o
			}
		}
		return false, o
	})
	t.Logf("pithctl list-units after failover:\n%s", out)
	checkMongo(t, spare, "mongo@1")
	if got, _ := m2.try("systemctl is-active mongo@2.service"); got != "active" {
		t.Errorf("%s: mongo@2 is %q after the failover, want it left running", m2.Name, got)
	}
	if got, _ := spare.try("pithctl kv get /message"); got != "hello" {
		t.Errorf("after losing %s, /message on %s = %q", m1.Name, spare.Name, got)
	}
}

// checkMongo checks the container of a mongo@N unit answers on its node.
func checkMongo(t *testing.T, n *Node, inst string) {
	t.Helper()
	host := n.Run("hostname")
	want := inst + " on " + host
	n.Poll(inst+" answering on :27017", 2*time.Second, func() (bool, string) {
		out, ok := n.try(httpGetScript("27017"))
		return ok && out == want, out
	})
	if got := n.Run("systemctl is-active " + inst + ".service"); got != "active" {
		t.Errorf("%s: %s is %q", n.Name, inst, got)
	}
}

func maxSSH(ups []upTimes) time.Duration {
	var m time.Duration
	for _, u := range ups {
		m = max(m, u.ssh)
	}
	return m
}
