package firstboot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pith-os/pith/cloudconfig/apply"
	"github.com/pith-os/pith/cloudconfig/apply/applytest"

	"github.com/pith-os/pith/agent/datasource"
)

// bootConfig probes only what the test puts under root (and a closed
// loopback port for the metadata services).
func bootConfig(root, cmdline, fromFile string) datasource.Config {
	return datasource.Config{Root: root, Cmdline: &cmdline, FromFile: fromFile, ConfigDrives: []string{},
		MetadataURL: "http://127.0.0.1:1", RequestTimeout: 200 * time.Millisecond, Attempts: 1}
}

func writeTestFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const oemConfig = `#cloud-config
users:
  - name: vagrant
    groups: [adm]
    ssh-authorized-keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl oem"]
write_files:
  - path: /etc/oem-file
    content: from OEM
pith:
  cluster:
    name: from-oem
`

// OEM first, user-data second; OEM never configures pithd; applying the
// same again changes nothing; a changed user-data changes just that.
func TestBootOEMThenUserData(t *testing.T) {
	stage, rec, root := newStage(t)
	writeTestFile(t, filepath.Join(root, datasource.OEMDir, datasource.OEMCloudConfig), oemConfig)
	ud := filepath.Join(t.TempDir(), "user-data")
	writeTestFile(t, ud, "#cloud-config\nwrite_files:\n  - path: /etc/both\n    content: user's\npith:\n  cluster:\n    name: from-user\n")
	var said []string
	o := BootOptions{Datasource: bootConfig(root, "pith.platform=qemu", ud), UseSaved: true,
		Say: func(l Level, f string, a ...any) {
			said = append(said, strings.TrimSpace(strings.ReplaceAll(f, "%", "")))
		}}
	res, err := Boot(context.Background(), stage, o)
	if err != nil {
		t.Fatalf("%v\n%v", err, said)
	}
	if res.OEM == nil || !res.OEM.Applied || !res.OEM.FirstBoot || res.UserData == nil || !res.UserData.Applied || !res.AgentChanged {
		t.Fatalf("result %+v oem %+v ud %+v", res, res.OEM, res.UserData)
	}
	if _, ok, _ := stage.Applier.Accounts.LookupUser("vagrant"); !ok {
		t.Error("the OEM user was not made")
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/oem-file"), 0o644, 0, "from OEM")
	applytest.CheckFile(t, filepath.Join(root, "etc/both"), 0o644, 0, "user's")
	dropIn := applytest.Read(t, filepath.Join(root, apply.AgentDropIn))
	if !strings.Contains(dropIn, "ETCD_INITIAL_CLUSTER_TOKEN=from-user") || strings.Contains(dropIn, "from-oem") {
		t.Errorf("agent drop-in:\n%s", dropIn)
	}
	iOEM, iUser := slices.Index(res.Changes, "wrote /etc/oem-file"), slices.Index(res.Changes, "wrote "+apply.AgentDropIn)
	if iOEM < 0 || iUser < 0 || iOEM > iUser || !slices.Contains(res.Changes, "created user vagrant") {
		t.Errorf("changes %q", res.Changes)
	}
	if st, err := apply.ReadOEMState(root); err != nil || !st.Applied || st.Source != "oem" {
		t.Errorf("oem.json: %+v %v", st, err)
	}

	// Again, now and in full: nothing changes, systemd is not reloaded.
	rec.Calls = nil
	o.Now = true
	res, err = Boot(context.Background(), stage, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 0 || res.AgentChanged || res.OEM.FirstBoot || !res.UserData.FirstBoot {
		t.Errorf("second apply changed %q (agent %v, OEM in full %v, user-data in full %v)", res.Changes, res.AgentChanged, res.OEM.FirstBoot, res.UserData.FirstBoot)
	}
	if slices.Contains(rec.Calls, "daemon-reload") {
		t.Errorf("systemd reloaded for nothing: %v", rec.Calls)
	}

	// A new user-data: only its change, and pithd's settings changed.
	writeTestFile(t, ud, "#cloud-config\nwrite_files:\n  - path: /etc/both\n    content: user's v2\npith:\n  cluster:\n    name: from-user\n")
	res, err = Boot(context.Background(), stage, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Changes, []string{"wrote /etc/both"}) || res.AgentChanged {
		t.Errorf("changes %q agent %v", res.Changes, res.AgentChanged)
	}
}

// A broken OEM config is reported and skipped; the user-data still applies.
func TestBootInvalidOEM(t *testing.T) {
	stage, _, root := newStage(t)
	writeTestFile(t, filepath.Join(root, datasource.OEMDir, datasource.OEMCloudConfig), "#cloud-config\nusers:\n  - name: Bad Name\n")
	ud := filepath.Join(t.TempDir(), "user-data")
	writeTestFile(t, ud, "#cloud-config\nhostname: ok\n")
	res, err := Boot(context.Background(), stage, BootOptions{Datasource: bootConfig(root, "", ud)})
	var inv *apply.InvalidError
	if !errors.As(err, &inv) || !strings.Contains(err.Error(), "cloud-config from the OEM partition rejected") || !strings.Contains(err.Error(), apply.OEMReportFile) {
		t.Fatalf("err = %v", err)
	}
	if res.UserData == nil || !res.UserData.Applied || applytest.Read(t, filepath.Join(root, "etc/hostname")) != "ok\n" {
		t.Errorf("user-data not applied after a bad OEM config: %+v", res.UserData)
	}
	if rep := applytest.Read(t, filepath.Join(root, apply.StateDir, apply.OEMReportFile)); !strings.Contains(rep, apply.StateDir+"/"+apply.OEMUserDataFile+":3:11: error:") {
		t.Errorf("OEM report:\n%s", rep)
	}
	// Ignition on OEM is refused as a format.
	writeTestFile(t, filepath.Join(root, datasource.OEMDir, datasource.OEMCloudConfig), `{"ignition":{"version":"3.4.0"}}`)
	if _, err := Boot(context.Background(), stage, BootOptions{Datasource: bootConfig(root, "", ud)}); err == nil || !strings.Contains(err.Error(), "cloud-config from the OEM partition rejected") {
		t.Errorf("Ignition on OEM: %v", err)
	}
}

// On the vagrant platform without user-data yet, pithd waits (a drop-in
// with a condition on first-boot.done) and first boot stays open; when
// the Vagrant file lands, an apply runs the full first boot and lifts it.
func TestBootWaitsForVagrant(t *testing.T) {
	stage, rec, root := newStage(t)
	o := BootOptions{Datasource: bootConfig(root, "console=ttyS0 pith.platform=vagrant", "")}
	res, err := Boot(context.Background(), stage, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Waiting != "vagrant" || res.UserData != nil {
		t.Fatalf("result %+v", res)
	}
	if d := applytest.Read(t, filepath.Join(root, apply.WaitDropIn)); !strings.Contains(d, "ConditionPathExists=/var/lib/pith/first-boot.done") {
		t.Errorf("wait drop-in:\n%s", d)
	}
	if done, _ := stage.FirstBootDone(); done {
		t.Error("first boot recorded while waiting")
	}
	if st, err := apply.ReadState(root); err != nil || st.Waiting != "vagrant" {
		t.Errorf("state %+v %v", st, err)
	}
	if !slices.Equal(rec.Calls, []string{"daemon-reload"}) {
		t.Errorf("calls %v", rec.Calls)
	}
	// A reboot still waiting: the drop-in is as it was, no reload.
	rec.Calls = nil
	if res, err = Boot(context.Background(), stage, o); err != nil || res.Waiting != "vagrant" || len(rec.Calls) != 0 {
		t.Errorf("second wait: %+v %v calls %v", res, err, rec.Calls)
	}

	writeTestFile(t, filepath.Join(root, datasource.VagrantFile), "#cloud-config\nusers:\n  - name: dev\n")
	writeTestFile(t, filepath.Join(root, filepath.Dir(datasource.VagrantFile), "private-ipv4"), "172.17.8.101\n")
	rec.Calls = nil
	o.Now = true
	res, err = Boot(context.Background(), stage, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Waiting != "" || res.UserData.Source != "vagrant" || !res.UserData.FirstBoot {
		t.Errorf("result %+v state %+v", res, res.UserData)
	}
	if _, err := os.Stat(filepath.Join(root, apply.WaitDropIn)); !os.IsNotExist(err) {
		t.Errorf("wait drop-in still there: %v", err)
	}
	if done, _ := stage.FirstBootDone(); !done {
		t.Error("first boot not recorded")
	}
	if _, ok, _ := stage.Applier.Accounts.LookupUser("dev"); !ok {
		t.Error("the user-data's user was not made")
	}
	if !slices.Contains(rec.Calls, "daemon-reload") || !slices.Contains(res.Changes, "removed "+apply.WaitDropIn) {
		t.Errorf("calls %v changes %q", rec.Calls, res.Changes)
	}
}

// Off the vagrant platform, no datasource means booting without user-data,
// never waiting.
func TestBootNoWaitElsewhere(t *testing.T) {
	stage, _, root := newStage(t)
	res, err := Boot(context.Background(), stage, BootOptions{Datasource: bootConfig(root, "pith.platform=qemu", "")})
	if err != nil || res.Waiting != "" || res.UserData == nil || !res.UserData.Applied || res.UserData.Source != "none" {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(root, apply.WaitDropIn)); !os.IsNotExist(err) {
		t.Error("wait drop-in written off the vagrant platform")
	}
}

// networkd's files go to /etc/systemd/network (runtime: /run/...), get no
// command, and networkd restarts once, only when one changed.
func TestNetworkUnitsApply(t *testing.T) {
	stage, rec, root := newStage(t)
	ud := `#cloud-config
coreos:
  units:
    - name: 10-static.network
      command: start
      content: |
        [Match]
        Name=eth1
        [Network]
        Address=172.17.8.101/24
    - name: 20-br0.netdev
      runtime: true
      content: |
        [NetDev]
        Name=br0
        Kind=bridge
    - name: 80-pith-dhcp.network
      drop_ins:
        - name: 50-dns.conf
          content: |
            [Network]
            DNS=10.0.2.3
`
	st, err := stage.Run(context.Background(), apply.Input{Source: "test", UserData: []byte(ud)})
	if err != nil {
		t.Fatalf("%v %+v", err, st)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/systemd/network/10-static.network"), 0o644, 0, "[Match]\nName=eth1\n[Network]\nAddress=172.17.8.101/24\n")
	applytest.CheckFile(t, filepath.Join(root, "run/systemd/network/20-br0.netdev"), 0o644, 0, "[NetDev]\nName=br0\nKind=bridge\n")
	applytest.CheckFile(t, filepath.Join(root, "etc/systemd/network/80-pith-dhcp.network.d/50-dns.conf"), 0o644, 0, "[Network]\nDNS=10.0.2.3\n")
	if !slices.Equal(rec.Calls, []string{"restart " + apply.NetworkdUnit}) {
		t.Errorf("calls %v, want only a networkd restart", rec.Calls)
	}
	rec.Calls = nil
	if _, err := stage.Run(context.Background(), apply.Input{Source: "test", UserData: []byte(ud), Full: true}); err != nil {
		t.Fatal(err)
	}
	if len(rec.Calls) != 0 {
		t.Errorf("unchanged network files restarted networkd: %v", rec.Calls)
	}
}

// pithctl userdata apply --from-file replaces the user-data, not the
// machine's metadata: the addresses fw_cfg gave stay in /etc/environment.
func TestBootFromFileKeepsMetadata(t *testing.T) {
	stage, _, root := newStage(t)
	fw := filepath.Join(root, datasource.FwCfgDir)
	writeTestFile(t, filepath.Join(fw, "user-data", "raw"), "#cloud-config\nhostname: a\n")
	writeTestFile(t, filepath.Join(fw, "meta-data", "raw"), `{"private_ipv4": "10.0.2.15"}`)
	if _, err := Boot(context.Background(), stage, BootOptions{Datasource: bootConfig(root, "pith.platform=qemu", "")}); err != nil {
		t.Fatal(err)
	}
	env := applytest.Read(t, filepath.Join(root, "etc/environment"))
	if !strings.Contains(env, "COREOS_PRIVATE_IPV4=10.0.2.15") {
		t.Fatalf("/etc/environment:\n%s", env)
	}
	ud := filepath.Join(t.TempDir(), "ud")
	writeTestFile(t, ud, "#cloud-config\nhostname: a\nwrite_files:\n  - path: /etc/x\n    content: $private_ipv4\n")
	res, err := Boot(context.Background(), stage, BootOptions{Datasource: bootConfig(root, "pith.platform=qemu", ud), Now: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Changes, []string{"wrote /etc/x"}) || applytest.Read(t, filepath.Join(root, "etc/x")) != "10.0.2.15" {
		t.Errorf("changes %q, /etc/x %q", res.Changes, applytest.Read(t, filepath.Join(root, "etc/x")))
	}
}
