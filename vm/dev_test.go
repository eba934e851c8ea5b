package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// devModules are the modules devinit loads, in dependency order.
const devModules = "kernel/drivers/virtio/virtio_ring.ko,kernel/drivers/virtio/virtio.ko," +
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko,kernel/drivers/virtio/virtio_pci_modern_dev.ko," +
	"kernel/drivers/virtio/virtio_pci.ko,kernel/net/core/failover.ko,kernel/drivers/net/net_failover.ko," +
	"kernel/drivers/net/virtio_net.ko,kernel/drivers/firmware/qemu_fw_cfg.ko"

// TestDevKernelCluster boots two nodes of a Debian kernel with devinit
// (testdata/devinit, packed with the modules above) and checks the parts a
// Pith image relies on: fw_cfg blobs, the private network between nodes, the
// serial log, and stopping. It needs a kernel and initrd that the project
// does not build, so it runs only when PITH_VM_DEV_KERNEL and
// PITH_VM_DEV_INITRD name them (the e2e tests cover the same with the image).
func TestDevKernelCluster(t *testing.T) {
	kernel, initrd := os.Getenv("PITH_VM_DEV_KERNEL"), os.Getenv("PITH_VM_DEV_INITRD")
	if kernel == "" || initrd == "" {
		t.Skip("set PITH_VM_DEV_KERNEL and PITH_VM_DEV_INITRD to a Debian kernel and a devinit initrd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ud := filepath.Join(dir, "ud.yaml")
	os.WriteFile(ud, []byte("#cloud-config\nhostname: dev\n"), 0o644)
	c, err := StartCluster(ctx, ClusterConfig{Dir: filepath.Join(dir, "s"), Nodes: 2, Log: t.Logf, Node: Config{
		Kernel: kernel, Initrd: initrd, UserData: ud,
		Append: "console=ttyS0 panic=-1 DEVINIT_MODULES=" + devModules,
		Accel:  ProbeAccel(ctx, "qemu-system-x86_64"), MemoryMiB: 512,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(0)
	for i, m := range c.Machines {
		con := Console{Path: m.SerialLog}
		if _, _, err := con.WaitFor(ctx, 0, m.Done(), nil, "login: ready"); err != nil {
			b, _ := con.ReadFrom(0)
			t.Fatalf("%v\n%s", err, b)
		}
		b, _ := con.ReadFrom(0)
		ip := strings.Split(PrivateIPv4(i), "/")[0]
		for _, want := range []string{`fw_cfg user-data: "#cloud-config\nhostname: dev"`, `\"ssh_public_keys\": [\n    \"ssh-ed25519 `, `\"private_ipv4\": \"` + ip + `\"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s: console lacks %s:\n%s", m.Config.Name, want, b)
			}
		}
	}
	// Each node hears the other's broadcast through the switch.
	for i, m := range c.Machines {
		other := strings.ReplaceAll(c.Machines[1-i].Config.PrivateMAC, ":", "")
		con := Console{Path: m.SerialLog}
		if _, _, err := con.WaitFor(ctx, 0, m.Done(), nil, "heard \"hello from "+other); err != nil {
			b, _ := con.ReadFrom(0)
			t.Fatalf("%v\n%s", err, b)
		}
	}
	c.Stop(time.Second)
	for _, m := range c.Machines {
		if m.Running() {
			t.Errorf("%s still running after Stop", m.Config.Name)
		}
	}
}
