package initramfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ec2IMDS is EC2's metadata service with IMDSv2 required: a token from
// PUT /latest/api/token, and every GET must carry it. It logs what it
// answered.
type ec2IMDS struct {
	userData string
	mu       sync.Mutex
	log      []string
}

func (s *ec2IMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const tok = "pith-test-token"
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, fmt.Sprintf("%s %s token=%v", r.Method, r.URL.Path, r.Header.Get("X-aws-ec2-metadata-token") == tok))
	switch {
	case r.URL.Path == "/latest/api/token" && r.Method == http.MethodPut && r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != "":
		fmt.Fprint(w, tok)
	case r.Header.Get("X-aws-ec2-metadata-token") != tok:
		http.Error(w, "", http.StatusUnauthorized)
	case r.URL.Path == "/latest/meta-data/instance-id":
		fmt.Fprint(w, "i-0e2e5eedc0ffee123")
	case r.URL.Path == "/latest/user-data":
		fmt.Fprint(w, s.userData)
	default:
		http.NotFound(w, r)
	}
}

// configServer answers the config URLs: GET /pith/<name> is configs[name],
// a 503 first where flaky[name] is set (a server still starting). It
// logs what it answered.
type configServer struct {
	configs map[string]string
	mu      sync.Mutex
	flaky   map[string]bool
	log     []string
}

func (s *configServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.TrimPrefix(r.URL.Path, "/pith/")
	cfg, ok := s.configs[name]
	switch {
	case !ok:
		http.NotFound(w, r)
	case s.flaky[name]:
		s.flaky[name] = false
		http.Error(w, "starting", http.StatusServiceUnavailable)
	default:
		fmt.Fprint(w, cfg)
	}
	s.log = append(s.log, fmt.Sprintf("%s %s", r.Method, r.URL.Path))
}

// count is how many times the server answered req.
func (s *configServer) count(req string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.log {
		if l == req {
			n++
		}
	}
	return n
}

// TestBootQEMUStorageEC2: on pith.platform=ec2 the first boot brings its
// NIC up with DHCP (QEMU's user network, link-local as EC2's reach to
// the service is), reads the Ignition config from the metadata service
// at 169.254.169.254 (a guestfwd to a fake on the host's 127.0.0.1) with
// an IMDSv2 token, takes the NIC down again, partitions the data disk
// and boots on: systemd finds the NIC down without an address or route,
// and ROOT records the config as EC2's for pithd. Without the service
// (no guestfwd) the boot waits its bound, says so in one line and boots
// on without storage, the NIC down all the same. The same network path
// reads ignition.config.url on any platform: a server that answers 503
// first is tried again (a line a try), its config partitions the disk;
// a URL that answers a cloud-config stops the boot at once, nothing
// applied, the NIC down.
func TestBootQEMUStorageEC2(t *testing.T) {
	t.Parallel() // each boots its own QEMU: two at a time use both cores
	dir := t.TempDir()
	vmlinuz, initrd, systemd := storageInitrd(t, dir)
	relay := filepath.Join(dir, "tcprelay")
	goBuild(t, relay, "./testdata/tcprelay")
	const storageCfg = `{"ignition":{"version":"3.4.0"},"storage":{
  "disks":[{"device":"/dev/disk/by-id/virtio-data1","wipeTable":true,"partitions":[{"label":"e2edata"}]}]}}`
	srv := &ec2IMDS{userData: storageCfg}
	cfgs := &configServer{configs: map[string]string{"config.ign": storageCfg, "cloud.yaml": "#cloud-config\nhostname: a\n"}, flaky: map[string]bool{"config.ign": true}}
	mux := http.NewServeMux()
	mux.Handle("/latest/", srv)
	mux.Handle("/pith/", cfgs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	// QEMU accepts a guestfwd address only inside its user network.
	const userNet = "user,id=n0,restrict=on,net=169.254.0.0/16"
	imdsFwd := ",guestfwd=tcp:169.254.169.254:80-cmd:" + relay + " " + l.Addr().String()
	urlFwd := ",guestfwd=tcp:169.254.10.10:80-cmd:" + relay + " " + l.Addr().String()
	nicDown := []string{`PITH-TEST: net eth0=up=false addrs=0`, `PITH-TEST: net.routes=0`, `PITH-TEST: done`}
	const stopped = "the boot stops here (not rebooting)"

	// boot boots with cmdline's first-boot source until stop; the data
	// disk must have e2edata afterwards when partitioned.
	// nics are QEMU arguments for more NICs; the user network's is in
	// PCI slot 0x10, with uplinkMAC.
	const uplinkMAC = "52:54:00:e2:e0:10"
	boot := func(t *testing.T, cmdline, netdev, stop string, partitioned bool, nics ...string) string {
		dir := t.TempDir()
		disk, rootHash := makeBootDisk(t, dir, systemd)
		data := filepath.Join(dir, "vdb.img")
		mustRun(t, "", "truncate", "-s", "64M", data)
		cmdline += " pith.slot=a pith.usr=PARTUUID=" + bootUsrUUID + " pith.root=PARTUUID=" + bootRootUUID + " pith.usrhash=" + rootHash
		log := bootUntil(t, vmlinuz, initrd, cmdline, stop, "", disk, data, append(nics,
			"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,addr=0x10,mac="+uplinkMAC,
			// RDRAND, as EC2's x86 instances have: the kernel's RNG is then
			// ready at once, and the DHCP client's transaction id waits on it.
			// QEMU's default model plus RDRAND, not max: TCG emulates max's
			// newer features at a cost (vm.tcgCPU).
			"-cpu", "qemu64,+rdrand")...)
		if out := mustRun(t, "", "sgdisk", "-p", data); strings.Contains(out, "e2edata") != partitioned {
			t.Errorf("the second disk after the boot:\n%s", out)
		}
		return log
	}

	// The machine has a NIC without a DHCP server (a cluster port, a
	// second ENI) in a PCI slot before the uplink's: the lease comes on
	// the uplink, whichever name the kernel gave it, and both are down
	// again afterwards.
	t.Run("imds", func(t *testing.T) {
		log := boot(t, "pith.platform=ec2", userNet+imdsFwd, "PITH-TEST: done", true,
			"-netdev", "socket,id=dead,udp=127.0.0.1:9,localaddr=127.0.0.1:0", "-device", "virtio-net-pci,netdev=dead,addr=0x8,mac=52:54:00:e2:e0:08")
		expectInOrder(t, log,
			`first boot: created the ROOT skeleton`,
			`Ignition: eth[01] \(`+uplinkMAC+`\) is up for the EC2 metadata service: 169\.254\.\d+\.\d+ from DHCPv4 server 169\.254\.\d+\.2`,
			`Ignition: eth0 is down again: no address, no route`,
			`Ignition: eth1 is down again: no address, no route`,
			`Ignition: config from EC2 metadata service \(instance i-0e2e5eedc0ffee123\)`,
			`Ignition storage: 1 disks, 0 arrays, 0 LUKS volumes, 0 filesystems from EC2 metadata service`,
			`Ignition storage: partition created disk=/dev/disk/by-id/virtio-data1 number=1 label=e2edata`,
			`Ignition storage: done`,
			`switching root`,
			`PITH-TEST: ignition-source=ec2 [0-9a-f]{64}`,
			`PITH-TEST: net eth0=up=false addrs=0`, `PITH-TEST: net eth1=up=false addrs=0`, `PITH-TEST: net.routes=0`, `PITH-TEST: done`)
		// Both were tried (u-root's client logs each), whichever is eth0.
		for _, nic := range []string{"eth0", "eth1"} {
			expectInOrder(t, log, `Bringing up interface `+nic+`\.\.\.`, `is up for the EC2 metadata service`)
		}
		srv.mu.Lock()
		defer srv.mu.Unlock()
		want := []string{"PUT /latest/api/token token=false", "GET /latest/meta-data/instance-id token=true", "GET /latest/user-data token=true"}
		if strings.Join(srv.log, "\n") != strings.Join(want, "\n") {
			t.Errorf("the metadata service answered:\n%s\nwant:\n%s", strings.Join(srv.log, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("no imds", func(t *testing.T) {
		log := boot(t, "pith.platform=ec2", userNet, "PITH-TEST: done", false)
		expectInOrder(t, log, append([]string{
			`Ignition: eth0 \(` + uplinkMAC + `\) is up for the EC2 metadata service`,
			`Ignition: waiting for the EC2 metadata service at http://169\.254\.169\.254 \(\d+s left\)`,
			`Ignition: the EC2 metadata service did not answer at http://169\.254\.169\.254 within 30s: booting on without the instance's storage and kernel arguments`,
			`Ignition: eth0 is down again: no address, no route`,
			`switching root`,
			`PITH-TEST: ignition-source=ERR`,
		}, nicDown...)...)
		if strings.Contains(log, "Ignition storage:") || strings.Contains(log, "Ignition: config from") {
			t.Error("a config was applied without the metadata service")
		}
	})

	t.Run("config url", func(t *testing.T) {
		log := boot(t, "ignition.config.url=http://169.254.10.10/pith/config.ign", userNet+urlFwd, "PITH-TEST: done", true)
		sum := sha256.Sum256([]byte(storageCfg))
		expectInOrder(t, log, append([]string{
			`Ignition: eth0 \(` + uplinkMAC + `\) is up for the config URL: 169\.254\.\d+\.\d+ from DHCPv4 server 169\.254\.\d+\.2`,
			`Ignition: GET http://169\.254\.10\.10/pith/config\.ign: try 1 failed \(503 Service Unavailable\); again in 200ms`,
			`Ignition: eth0 is down again: no address, no route`,
			`Ignition: config from ignition\.config\.url http://169\.254\.10\.10/pith/config\.ign`,
			`Ignition storage: partition created disk=/dev/disk/by-id/virtio-data1 number=1 label=e2edata`,
			`Ignition storage: done`,
			`switching root`,
			`PITH-TEST: ignition-source=ignition-url ` + hex.EncodeToString(sum[:]),
		}, nicDown...)...)
		if n := cfgs.count("GET /pith/config.ign"); n != 2 {
			t.Errorf("the config server answered the config %d times, want twice (a 503, then the config)", n)
		}
	})

	t.Run("config url not ignition", func(t *testing.T) {
		log := boot(t, "ignition.config.url=http://169.254.10.10/pith/cloud.yaml", userNet+urlFwd, stopped, false)
		expectInOrder(t, log,
			`Ignition: eth0 \(`+uplinkMAC+`\) is up for the config URL`,
			`Ignition: eth0 is down again: no address, no route`,
			`pith-init: FAILED: Ignition storage \(reading the config from ignition\.config\.url http://169\.254\.10\.10/pith/cloud\.yaml\) failed, the first boot stops here as Ignition does: it is not an Ignition config \(it reads as cloud-config\)`,
			`pith-init: the boot stops here \(not rebooting\)`)
		if strings.Contains(log, "switching root") {
			t.Error("switched root after the config URL answered a cloud-config")
		}
		if n := cfgs.count("GET /pith/cloud.yaml"); n != 1 {
			t.Errorf("the config server answered the cloud-config %d times, want once (it is not tried again)", n)
		}
	})
}
