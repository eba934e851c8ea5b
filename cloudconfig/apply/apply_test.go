package apply

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/cloudconfig/apply/applytest"
)

func newStage(t *testing.T) (*Stage, *applytest.Recorder, string) {
	root := applytest.NewRoot(t)
	rec := &applytest.Recorder{}
	return &Stage{Applier: &Applier{Root: root, Accounts: &Shadow{Root: root}, Units: rec, Host: rec, Log: slog.New(slog.NewTextHandler(t.Output(), nil))}}, rec, root
}

func field(t *testing.T, root, file, name string, i int) string {
	t.Helper()
	for _, l := range strings.Split(applytest.Read(t, filepath.Join(root, "etc", file)), "\n") {
		f := strings.Split(l, ":")
		if f[0] == name && len(f) > i {
			return f[i]
		}
	}
	t.Fatalf("%s not in %s", name, file)
	return ""
}

const aliceKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop"

func TestCloudConfigFirstAndLaterBoots(t *testing.T) {
	data, err := os.ReadFile("../testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stage, rec, root := newStage(t)
	in := Input{Source: "test", UserData: data, Metadata: map[string]string{"k": "v"},
		Addresses: cloudconfig.Addresses{PrivateIPv4: net.ParseIP("10.0.2.15")},
		SSHKeys:   []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl meta"}}
	st, err := stage.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if !st.FirstBoot || !st.Applied || !st.Valid || st.Format != cloudconfig.FormatCloudConfig {
		t.Fatalf("state %+v", st)
	}

	// hostname and /etc/hosts
	applytest.CheckFile(t, filepath.Join(root, "etc/hostname"), 0o644, 0, "node1.example.com\n")
	if h := applytest.Read(t, filepath.Join(root, "etc/hosts")); !strings.Contains(h, "127.0.0.1 node1.example.com node1 localhost") {
		t.Errorf("/etc/hosts = %q", h)
	}
	// users, made by the real tools
	a, ok, err := (&Shadow{Root: root}).LookupUser("alice")
	if err != nil || !ok || a.Home != "/home/alice" {
		t.Fatalf("alice: %+v %v %v", a, ok, err)
	}
	if got := field(t, root, "passwd", "alice", 4); got != "Alice Example" {
		t.Errorf("gecos %q", got)
	}
	if got := field(t, root, "passwd", "alice", 6); got != "/bin/bash" {
		t.Errorf("shell %q", got)
	}
	if got := field(t, root, "shadow", "alice", 1); !strings.HasPrefix(got, "$6$rounds=4096$saltsalt$") {
		t.Errorf("alice's hash %q", got)
	}
	for _, g := range []string{"sudo", "docker"} {
		if got := field(t, root, "group", g, 3); !strings.Contains(","+got+",", ",alice,") {
			t.Errorf("group %s members %q", g, got)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "home/alice")); err != nil {
		t.Errorf("alice's home: %v", err)
	}
	svc, ok, _ := (&Shadow{Root: root}).LookupUser("svc")
	if !ok || svc.UID >= 1000 {
		t.Errorf("svc should be a system user: %+v", svc)
	}
	if got := field(t, root, "shadow", "svc", 7); got != "1" {
		t.Errorf("svc (inactive) expiry %q, want 1", got)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/sudoers.d/90-pith-alice"), 0o440, 0, "# Written by pithd from user-data.\nalice ALL=(ALL) NOPASSWD:ALL\n")
	if _, err := os.Stat(filepath.Join(root, "etc/sudoers.d/90-pith-svc")); !os.IsNotExist(err) {
		t.Errorf("sudo: false wrote a sudoers file: %v", err)
	}
	// SSH keys
	applytest.CheckFile(t, filepath.Join(root, "home/alice/.ssh/authorized_keys.d/pith-cloudinit"), 0o600, a.UID, aliceKey+"\n")
	if got := applytest.Read(t, filepath.Join(root, "home/alice/.ssh/authorized_keys")); !strings.Contains(got, aliceKey) {
		t.Errorf("alice authorized_keys %q", got)
	}
	core, ok, _ := (&Shadow{Root: root}).LookupUser("core")
	if !ok {
		t.Fatal("core not created for top-level keys")
	}
	ck := applytest.Read(t, filepath.Join(root, core.Home, ".ssh/authorized_keys"))
	if !strings.Contains(ck, "core@workstation") || !strings.Contains(ck, " meta") {
		t.Errorf("core's keys (user-data and metadata) = %q", ck)
	}
	st2, _ := os.Stat(filepath.Join(root, core.Home, ".ssh"))
	if st2.Mode() != os.ModeDir|0o700 || fileUID(st2) != core.UID {
		t.Errorf("~core/.ssh mode %v uid %d", st2.Mode(), fileUID(st2))
	}
	// write_files: exact modes, decoded content
	applytest.CheckFile(t, filepath.Join(root, "etc/motd"), 0o644, 0, "Welcome to Pith.\n")
	applytest.CheckFile(t, filepath.Join(root, "opt/bin/hello"), 0o755, 0, "#!/bin/sh\necho hello\n")
	applytest.CheckFile(t, filepath.Join(root, "etc/pith/gz.txt"), 0o644, 0, "hello\n")
	// units: files, then reload, mask/enable, then commands
	applytest.CheckFile(t, filepath.Join(root, "etc/systemd/system/hello.service"), 0o644, 0, "")
	applytest.CheckFile(t, filepath.Join(root, "run/systemd/system/tmp-scratch.mount"), 0o644, 0, "")
	applytest.CheckFile(t, filepath.Join(root, "etc/systemd/system/docker.service.d/50-opts.conf"), 0o644, 0, "[Service]\nEnvironment=DOCKER_OPTS=--log-level=warn\n")
	want := []string{"sethostname node1.example.com", "daemon-reload", "enable hello.service runtime=false", "mask update-engine.service runtime=false",
		"start etcd2.service", "start hello.service", "start tmp-scratch.mount"}
	if strings.Join(rec.Calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(rec.Calls, "\n"), strings.Join(want, "\n"))
	}
	// records
	if b := applytest.Read(t, filepath.Join(root, StateDir, UserDataFile)); b != string(data) {
		t.Error("user-data not saved as fetched")
	}
	if done, _ := stage.FirstBootDone(); !done {
		t.Error("first boot not recorded")
	}
	if applytest.Read(t, filepath.Join(root, StateDir, MetadataFile)) != "{\n  \"k\": \"v\"\n}\n" {
		t.Error("metadata not saved")
	}

	set, err := ReadSettings(root)
	if err != nil || set.Cluster.Name != "demo" || set.Cluster.AdvertiseIP != "10.0.2.15" || set.KV.MaxVoters != 5 {
		t.Errorf("settings %+v %v", set, err)
	}

	dropIn := applytest.Read(t, filepath.Join(root, AgentDropIn))
	for _, w := range []string{
		`Environment="ETCD_NAME=node1"`, // pith.cluster.node-name (and etcd2.name)
		`Environment="ETCD_INITIAL_CLUSTER=node1=http://10.0.2.15:2380"`,
		`Environment="ETCD_ADVERTISE_CLIENT_URLS=http://10.0.2.15:2379"`,
		`Environment="ETCD_HEARTBEAT_INTERVAL=100"`,
		`Environment="ETCD_MAX_VOTERS=5"`,
		`Environment="FLEET_METADATA=disk=ssd,role=web"`,
		`Environment="FLEET_PUBLIC_IP=10.0.2.15"`,
		`Environment="FLEET_AGENT_TTL=30s"`,
		`Environment="FLEET_ENGINE_RECONCILE_INTERVAL=2s"`, // pith.schedule's, over fleet's 2
		`Environment="PITH_SCHEDULE=true"`,
	} {
		if !strings.Contains(dropIn, w+"\n") {
			t.Errorf("pithd drop-in lacks %s:\n%s", w, dropIn)
		}
	}

	if strings.Contains(dropIn, "ETCD_DISCOVERY") {
		t.Errorf("pith.cluster.peers must replace etcd2's discovery:\n%s", dropIn)
	}

	// A later boot: files and units again, accounts untouched.
	os.Remove(filepath.Join(root, "etc/motd"))
	os.Remove(filepath.Join(root, "home/alice/.ssh/authorized_keys.d/pith-cloudinit"))
	rec.Calls = nil
	st, err = stage.RunSaved(context.Background())
	if err != nil || st.FirstBoot || !st.Applied {
		t.Fatalf("later boot: %+v %v", st, err)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/motd"), 0o644, 0, "Welcome to Pith.\n")
	if _, err := os.Stat(filepath.Join(root, "home/alice/.ssh/authorized_keys.d/pith-cloudinit")); !os.IsNotExist(err) {
		t.Error("a later boot rewrote SSH keys")
	}
	// The unit files are as the first boot wrote them: no daemon-reload,
	// the rest again.
	if len(rec.Calls) != len(want)-1 || slices.Contains(rec.Calls, "daemon-reload") {
		t.Errorf("later boot calls %v", rec.Calls)
	}
}

func TestInvalidUserDataChangesNothing(t *testing.T) {
	stage, rec, root := newStage(t)
	before := applytest.Read(t, filepath.Join(root, "etc/passwd"))
	ud := "#cloud-config\nhostname: good\nusers:\n  - name: bob\nwrite_files:\n  - path: /etc/x\n    content: x\ncoreos:\n  units:\n    - name: a.service\n      command: begin\n"
	st, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(ud)})
	var inv *InvalidError
	if !errors.As(err, &inv) || st.Valid || st.Applied || st.Errors != 1 {
		t.Fatalf("err %v, state %+v", err, st)
	}
	for _, p := range []string{"etc/hostname", "etc/x", "home/bob", filepath.Join(StateDir, FirstBootFile)} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists after invalid user-data", p)
		}
	}
	if applytest.Read(t, filepath.Join(root, "etc/passwd")) != before || len(rec.Calls) != 0 {
		t.Errorf("system changed: calls %v", rec.Calls)
	}
	rep := applytest.Read(t, filepath.Join(root, StateDir, ReportFile))
	if !strings.Contains(rep, "/var/lib/pith/user-data:11:16: error: coreos.units[0].command") {
		t.Errorf("report file: %q", rep)
	}
	saved, err := ReadState(root)
	if err != nil || saved.Valid || saved.Errors != 1 || saved.Format != cloudconfig.FormatCloudConfig {
		t.Errorf("saved state %+v %v", saved, err)
	}
}

// Rejected user-data still leaves the datasource's hostname and SSH keys,
// so the operator can log in and read the report (found by the e2e test:
// a node with invalid user-data booted but nobody could log in).
func TestInvalidUserDataKeepsMetadataAccess(t *testing.T) {
	stage, rec, root := newStage(t)
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl meta"
	ud := "#cloud-config\nhostname: from-user-data\nwrite_files:\n  - path: /etc/x\n    content: x\n    permissions: '0999'\n"
	st, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(ud), SSHKeys: []string{key}, Hostname: "node7"})
	var inv *InvalidError
	if !errors.As(err, &inv) || st.Valid || st.Applied {
		t.Fatalf("err %v, state %+v", err, st)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/hostname"), 0o644, 0, "node7\n")
	core, ok, _ := (&Shadow{Root: root}).LookupUser("core")
	if !ok {
		t.Fatal("core not created for the metadata's key")
	}
	if got := applytest.Read(t, filepath.Join(root, core.Home, ".ssh/authorized_keys")); !strings.Contains(got, key) {
		t.Errorf("core's authorized_keys = %q, want the metadata key", got)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/x")); !os.IsNotExist(err) {
		t.Error("a file of the rejected user-data was written")
	}
	if want := "sethostname node7"; strings.Join(rec.Calls, "\n") != want {
		t.Errorf("calls %v, want only %q", rec.Calls, want)
	}
}

func TestSubstitutionAndMissingVariables(t *testing.T) {
	stage, _, root := newStage(t)
	ud := "#cloud-config\nwrite_files:\n  - path: /etc/addr\n    content: \"$private_ipv4 $public_ipv4\"\n"
	st, err := stage.Run(context.Background(), Input{Source: "qemu-fw-cfg", UserData: []byte(ud), Addresses: cloudconfig.Addresses{PrivateIPv4: net.ParseIP("10.0.2.15")}})
	if err != nil {
		t.Fatal(err)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/addr"), 0o644, 0, "10.0.2.15 $public_ipv4")
	if st.Warnings != 1 || st.Report[0].Line != 4 || st.Report[0].Column != 25 || !strings.Contains(st.Report[0].Message, "$public_ipv4") {
		t.Errorf("report %+v", st.Report)
	}
}

func TestWriteFilesModesAndOwners(t *testing.T) {
	stage, _, root := newStage(t)
	ud := `#cloud-config
users:
  - name: dave
write_files:
  - path: /opt/suid
    permissions: '4755'
    owner: dave:dave
    content: x
  - path: /var/tmpdir/sticky
    permissions: '1777'
    owner: "0:0"
    content: y
  - path: /etc/private
    permissions: '0600'
    owner: dave
    content: z
`
	if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(ud)}); err != nil {
		t.Fatal(err)
	}
	d, _, _ := (&Shadow{Root: root}).LookupUser("dave")
	applytest.CheckFile(t, filepath.Join(root, "opt/suid"), os.ModeSetuid|0o755, d.UID, "x")
	applytest.CheckFile(t, filepath.Join(root, "var/tmpdir/sticky"), os.ModeSticky|0o777, 0, "y")
	applytest.CheckFile(t, filepath.Join(root, "etc/private"), 0o600, d.UID, "z")
	// No temp files left behind.
	entries, _ := os.ReadDir(filepath.Join(root, "opt"))
	if len(entries) != 1 {
		t.Errorf("leftovers in /opt: %v", entries)
	}
}

func TestApplyFailureIsRecordedAndRetried(t *testing.T) {
	stage, rec, root := newStage(t)
	rec.Fail = "start a.service"
	ud := "#cloud-config\ncoreos:\n  units:\n    - name: a.service\n      command: start\n      content: \"[Service]\\nExecStart=/bin/true\\n\"\n"
	st, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(ud)})
	if err == nil || st.Applied || !strings.Contains(st.ApplyErr, "injected failure") {
		t.Fatalf("err %v state %+v", err, st)
	}
	if done, _ := stage.FirstBootDone(); done {
		t.Error("failed first boot recorded as done")
	}
	rec.Fail = ""
	if st, err = stage.Run(context.Background(), Input{Source: "test", UserData: []byte(ud)}); err != nil || !st.FirstBoot || !st.Applied {
		t.Fatalf("retry: %v %+v", err, st)
	}
	_ = root
}

func TestScript(t *testing.T) {
	stage, rec, root := newStage(t)
	script := "#!/bin/sh\necho first boot\n"
	if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(script)}); err != nil {
		t.Fatal(err)
	}
	applytest.CheckFile(t, filepath.Join(root, ScriptPath), 0o700, 0, script)
	if u := applytest.Read(t, filepath.Join(root, "run/systemd/system", scriptUnit)); !strings.Contains(u, "ExecStart="+ScriptPath) {
		t.Errorf("unit %q", u)
	}
	if strings.Join(rec.Calls, ",") != "daemon-reload,start "+scriptUnit {
		t.Errorf("calls %v", rec.Calls)
	}
	// Scripts run on first boot only.
	rec.Calls = nil
	if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(script)}); err != nil || len(rec.Calls) != 0 {
		t.Errorf("second boot ran the script again: %v %v", rec.Calls, err)
	}
}

func TestIgnition(t *testing.T) {
	data, err := os.ReadFile("../testdata/ignition-3.4.json")
	if err != nil {
		t.Fatal(err)
	}
	stage, rec, root := newStage(t)
	if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: data}); err != nil {
		t.Fatal(err)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/hostname"), 0o644, 0, "node3\n")
	applytest.CheckFile(t, filepath.Join(root, "etc/motd"), 0o644, 0, "Welcome to Pith.\n")
	st, err := os.Stat(filepath.Join(root, "var/lib/app"))
	if err != nil || st.Mode() != os.ModeDir|0o755 {
		t.Errorf("directory: %v %v", st, err)
	}
	if l, err := os.Readlink(filepath.Join(root, "etc/localtime")); err != nil || l != "/usr/share/zoneinfo/UTC" {
		t.Errorf("link %q %v", l, err)
	}
	if got := field(t, root, "group", "ops", 2); got != "1500" {
		t.Errorf("ops gid %q", got)
	}
	a, ok, _ := (&Shadow{Root: root}).LookupUser("alice")
	if !ok {
		t.Fatal("alice missing")
	}
	applytest.CheckFile(t, filepath.Join(root, "home/alice/.ssh/authorized_keys.d/pith-ignition"), 0o600, a.UID, aliceKey+"\n")
	applytest.CheckFile(t, filepath.Join(root, "etc/systemd/system/docker.service.d/50-opts.conf"), 0o644, 0, "[Service]\nEnvironment=X=1\n")
	// The running hostname follows the config's /etc/hostname (Ignition
	// writes it before boot; Pith applies on the running system).
	want := "sethostname node3,daemon-reload,enable hello.service runtime=false,start hello.service"
	if strings.Join(rec.Calls, ",") != want {
		t.Errorf("calls %v, want %s", rec.Calls, want)
	}
}

func TestIgnitionOverwriteConflictChangesNothing(t *testing.T) {
	stage, rec, root := newStage(t)
	if err := os.WriteFile(filepath.Join(root, "etc/existing"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `{"ignition":{"version":"3.4.0"},"storage":{"files":[
	  {"path":"/etc/new","contents":{"source":"data:,new"}},
	  {"path":"/etc/existing","contents":{"source":"data:,replaced"}}]},
	  "systemd":{"units":[{"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}]}}`
	_, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(cfg)})
	if err == nil || !strings.Contains(err.Error(), "overwrite is not true") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/new")); !os.IsNotExist(err) || applytest.Read(t, filepath.Join(root, "etc/existing")) != "old" || len(rec.Calls) != 0 {
		t.Errorf("conflicting config changed the system: %v", rec.Calls)
	}
}

func TestMetadataHostnameAndEnvironment(t *testing.T) {
	stage, rec, root := newStage(t)
	if err := os.WriteFile(filepath.Join(root, "etc/environment"), []byte("PATH=/usr/bin\nCOREOS_PUBLIC_IPV4=1.2.3.4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := Input{Source: "ec2", UserData: []byte("#cloud-config\nmanage_etc_hosts: localhost\n"), Hostname: "ip-10-0-0-5.ec2.internal",
		Addresses: cloudconfig.Addresses{PrivateIPv4: net.ParseIP("10.0.0.5"), PrivateIPv6: net.ParseIP("fd00::5")}}
	if _, err := stage.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/hostname"), 0o644, 0, "ip-10-0-0-5.ec2.internal\n")
	if h := applytest.Read(t, filepath.Join(root, "etc/hosts")); !strings.Contains(h, "127.0.0.1 ip-10-0-0-5.ec2.internal ip-10-0-0-5 localhost") {
		t.Errorf("/etc/hosts %q", h)
	}
	want := "PATH=/usr/bin\nCOREOS_PRIVATE_IPV4=10.0.0.5\nPITH_PRIVATE_IPV4=10.0.0.5\nCOREOS_PRIVATE_IPV6=fd00::5\nPITH_PRIVATE_IPV6=fd00::5\n"
	applytest.CheckFile(t, filepath.Join(root, "etc/environment"), 0o644, 0, want)
	if strings.Join(rec.Calls, ",") != "sethostname ip-10-0-0-5.ec2.internal" {
		t.Errorf("calls %v", rec.Calls)
	}
	// user-data's hostname wins over the metadata's; a bad metadata name is ignored.
	rec.Calls = nil
	in.UserData = []byte("#cloud-config\nhostname: mine\n")
	if _, err := stage.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	applytest.CheckFile(t, filepath.Join(root, "etc/hostname"), 0o644, 0, "mine\n")
	in.UserData, in.Hostname = nil, "bad_name!"
	rec.Calls = nil
	if _, err := stage.Run(context.Background(), in); err != nil || len(rec.Calls) != 0 {
		t.Errorf("bad metadata hostname applied: %v %v", rec.Calls, err)
	}
}

func TestMissingOwnerChangesNothing(t *testing.T) {
	stage, rec, root := newStage(t)
	ud := "#cloud-config\nhostname: h\nusers:\n  - name: erin\nwrite_files:\n  - path: /etc/a\n    owner: erin:erin\n    content: a\n  - path: /etc/b\n    owner: nobody-here\n    content: b\n"
	_, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(ud)})
	if err == nil || !strings.Contains(err.Error(), `/etc/b: no user "nobody-here"`) || strings.Contains(err.Error(), "erin") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/hostname")); !os.IsNotExist(err) || len(rec.Calls) != 0 {
		t.Errorf("something was applied: %v", rec.Calls)
	}
	if _, ok, _ := (&Shadow{Root: root}).LookupUser("erin"); ok {
		t.Error("erin was created")
	}
	cfg := `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/c","user":{"name":"ghost"},"contents":{"source":"data:,c"}}]}}`
	if _, err := stage.Run(context.Background(), Input{Source: "test", UserData: []byte(cfg)}); err == nil || !strings.Contains(err.Error(), `/etc/c: no user "ghost"`) {
		t.Fatalf("ignition err = %v", err)
	}
}
