package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exit2 is blkid's "nothing found".
type exit2 struct{}

func (exit2) Error() string { return "exit status 2" }
func (exit2) ExitCode() int { return 2 }

// fakeTools stands in for the USR's tools: it records each command, keeps
// what blkid finds per device and changes it as mdadm, cryptsetup and
// mkfs would, and fails the commands starting with a key of fail
// ("cryptsetup luksOpen").
type fakeTools struct {
	root  string
	calls []string
	blkid map[string]string
	fail  map[string]bool
	keys  map[string]string // key file (chroot path) -> contents, when luksFormat ran
}

func (f *fakeTools) Run(name string, args ...string) ([]byte, error) {
	call := name + " " + strings.Join(args, " ")
	f.calls = append(f.calls, call)
	for prefix := range f.fail {
		if strings.HasPrefix(call, prefix) {
			return []byte("it failed\nfor this reason"), errors.New("exit status 1")
		}
	}
	last := args[len(args)-1]
	switch name + " " + args[0] {
	case "blkid -p":
		if f.blkid[last] == "" {
			return nil, exit2{}
		}
		return []byte(f.blkid[last]), nil
	case "mdadm --create":
		for _, a := range args {
			if strings.HasPrefix(a, "/dev/vd") {
				f.blkid[a] = "TYPE=linux_raid_member\n"
			}
		}
	case "mdadm --detail":
		return []byte("ARRAY " + last + " metadata=1.2 name=any:" + filepath.Base(last) + " UUID=0a1b2c3d:00000000:00000000:00000001\n"), nil
	case "cryptsetup luksFormat":
		for i, a := range args {
			if a == "--key-file" {
				b, err := os.ReadFile(filepath.Join(f.root, args[i+1]))
				if err != nil {
					return nil, err
				}
				f.keys[args[i+1]] = string(b)
			}
		}
		f.blkid[last] = "TYPE=crypto_LUKS\nUUID=6b1e0000-0000-4000-8000-00000000000c\n"
	case "mkfs.ext4 -F":
		f.blkid[last] = "TYPE=ext4\nUUID=e4e4e4e4-0000-4000-8000-000000000001\n"
	}
	return nil, nil
}

func newFakeTools(root string) *fakeTools {
	return &fakeTools{root: root, blkid: map[string]string{}, fail: map[string]bool{}, keys: map[string]string{}}
}

func fakeEnv(root string, r Runner) Env {
	return Env{Root: root, Run: r, Resolve: func(d string) (string, error) { return d, nil },
		BootDisks: []string{"vda"}, DisksOf: func(d string) ([]string, error) { return []string{filepath.Base(d)}, nil }}
}

// RAID1 over two disks, LUKS2 bound to the TPM on it, ext4 on that: the
// commands in Ignition's order, chroot paths for the key, the key gone
// from tmpfs and never in ROOT, the volume closed for systemd to open,
// and what later boots read.
func TestApplyRaidLuksTPM(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/mdadm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, MdadmConf), []byte("HOMEHOST <system>\nMAILADDR root"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newFakeTools(root)
	plan := &Plan{
		Raid:        []Raid{{Name: "data", Level: "raid1", Devices: []string{"/dev/vdb", "/dev/vdc"}}},
		Luks:        []Luks{{Name: "data", Device: "/dev/md/data", TPM2: true, Discard: true}},
		Filesystems: []Filesystem{{Device: "/dev/mapper/data", Format: "ext4", Path: "/var/lib/docker"}},
	}
	if err := Apply(plan, fakeEnv(root, r)); err != nil {
		t.Fatal(err)
	}
	const key = "/run/pith-storage/data.key"
	want := []string{
		"blkid -p -o export /dev/vdb",
		"blkid -p -o export /dev/vdc",
		"modprobe -a md_mod raid1",
		"mdadm --create /dev/md/data --run --level raid1 --raid-devices 2 --metadata=1.2 --homehost=any /dev/vdb /dev/vdc",
		"chmod 0755 /dev/md",
		"mdadm --detail --brief /dev/md/data",
		"modprobe -a dm_crypt xts",
		"modprobe -a -q algif_skcipher aesni_intel",
		"blkid -p -o export /dev/md/data",
		"cryptsetup luksFormat --type luks2 --batch-mode --key-file " + key + " --pbkdf pbkdf2 --pbkdf-force-iterations 1000 /dev/md/data",
		"systemd-cryptenroll --unlock-key-file=" + key + " --tpm2-device=auto --tpm2-pcrs=7 /dev/md/data",
		"cryptsetup luksOpen /dev/md/data data --token-only --token-type systemd-tpm2 --persistent --allow-discards",
		"cryptsetup luksRemoveKey --batch-mode /dev/md/data " + key,
		"blkid -p -o export /dev/md/data",
		"blkid -p -o export /dev/mapper/data",
		"mkfs.ext4 -F -q /dev/mapper/data",
		"blkid -p -o export /dev/mapper/data",
		"cryptsetup luksClose data",
	}
	if got := strings.Join(r.calls, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if k := r.keys[key]; len(k) != 128 || strings.Trim(k, "0123456789abcdef") != "" {
		t.Errorf("generated key %q: want 128 hex digits", k)
	}
	if _, err := os.Stat(filepath.Join(root, key)); !os.IsNotExist(err) {
		t.Errorf("the TPM volume's key is still in %s: %v", key, err)
	}
	if _, err := os.Stat(filepath.Join(root, KeyDir, "data.key")); !os.IsNotExist(err) {
		t.Errorf("a TPM volume's key was kept in ROOT: %v", err)
	}
	checkFile(t, filepath.Join(root, MdadmConf), "HOMEHOST <system>\nMAILADDR root\n# Ignition storage.raid, written by pith-init on first boot\nARRAY /dev/md/data metadata=1.2 name=any:data UUID=0a1b2c3d:00000000:00000000:00000001\n")
	checkFile(t, filepath.Join(root, Crypttab), "# Ignition storage.luks, written by pith-init on first boot\ndata UUID=6b1e0000-0000-4000-8000-00000000000c none luks,tpm2-device=auto,discard\n")
	unit, _ := os.ReadFile(filepath.Join(root, UnitDir, "var-lib-docker.mount"))
	for _, w := range []string{"Requires=systemd-cryptsetup@data.service\nAfter=systemd-cryptsetup@data.service\n", "What=/dev/disk/by-uuid/e4e4e4e4-0000-4000-8000-000000000001\n"} {
		if !strings.Contains(string(unit), w) {
			t.Errorf("mount unit lacks %q:\n%s", w, unit)
		}
	}
}

func checkFile(t *testing.T, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != want {
		t.Errorf("%s (%v):\n%s\nwant:\n%s", p, err, b, want)
	}
}

// Without the TPM the key (the config's, or one generated) is kept in
// ROOT, 0400, for crypttab; label, uuid and options reach luksFormat.
func TestApplyLuksKeyFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		key   []byte
		pbkdf string // a generated key is not stretched
	}{{"keyFile", []byte("s3cret!\n"), ""}, {"generated", nil, " --pbkdf pbkdf2 --pbkdf-force-iterations 1000"}} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			r := newFakeTools(root)
			v := Luks{Name: "c", Device: "/dev/vdb1", Key: tc.key, Label: "crypt", UUID: "6b1e0000-0000-4000-8000-00000000000c", Options: []string{"--cipher", "aes-xts-plain64"}, OpenOptions: []string{"--perf-no_read_workqueue"}}
			if err := Apply(&Plan{Luks: []Luks{v}, Filesystems: []Filesystem{{Device: "/dev/disk/by-id/dm-name-c", Format: "ext4", Path: "/srv"}}}, fakeEnv(root, r)); err != nil {
				t.Fatal(err)
			}
			const key = "/etc/pith/luks/c.key"
			for _, w := range []string{
				"cryptsetup luksFormat --type luks2 --batch-mode --key-file " + key + tc.pbkdf + " --label crypt --uuid 6b1e0000-0000-4000-8000-00000000000c --cipher aes-xts-plain64 /dev/vdb1",
				"cryptsetup luksOpen /dev/vdb1 c --key-file " + key + " --persistent --perf-no_read_workqueue",
				"mkfs.ext4 -F -q /dev/mapper/c",
				"cryptsetup luksClose c",
			} {
				if !contains(r.calls, w) {
					t.Errorf("no %q in\n%s", w, strings.Join(r.calls, "\n"))
				}
			}
			fi, err := os.Stat(filepath.Join(root, key))
			if err != nil || fi.Mode().Perm() != 0o400 {
				t.Fatalf("kept key: %v, %v", fi, err)
			}
			if di, _ := os.Stat(filepath.Join(root, KeyDir)); di == nil || di.Mode().Perm() != 0o700 {
				t.Errorf("key directory mode: %v", di)
			}
			b, _ := os.ReadFile(filepath.Join(root, key))
			if tc.key != nil && string(b) != string(tc.key) || tc.key == nil && len(b) != 128 || r.keys[key] != string(b) {
				t.Errorf("kept key %q, formatted with %q", b, r.keys[key])
			}
			checkFile(t, filepath.Join(root, Crypttab), "# Ignition storage.luks, written by pith-init on first boot\nc UUID=6b1e0000-0000-4000-8000-00000000000c "+key+" luks\n")
			unit, _ := os.ReadFile(filepath.Join(root, UnitDir, "srv.mount"))
			if !strings.Contains(string(unit), "Requires=systemd-cryptsetup@c.service\n") {
				t.Errorf("srv.mount:\n%s", unit)
			}
		})
	}
}

func contains(calls []string, c string) bool {
	for _, x := range calls {
		if x == c {
			return true
		}
	}
	return false
}

// What is on a device decides, as in Ignition; every failure stops the
// stage before the next step (fail closed), and the first error names
// the step.
func TestApplyRaidLuksRefusals(t *testing.T) {
	luks := func(v Luks) *Plan { v.Name, v.Device = "c", "/dev/vdb"; return &Plan{Luks: []Luks{v}} }
	raid := &Plan{Raid: []Raid{{Name: "md", Level: "raid1", Devices: []string{"/dev/vdb", "/dev/vdc"}}}, Luks: []Luks{{Name: "c", Device: "/dev/md/md"}}}
	for _, tc := range []struct {
		name   string
		plan   *Plan
		blkid  map[string]string
		fail   string
		err    string
		ran    []string // commands that must have run
		notRan []string // command prefixes that must not have run
	}{
		{name: "array member holding ext4", plan: raid, blkid: map[string]string{"/dev/vdc": "TYPE=ext4\n"},
			err: "array md: /dev/vdc holds a ext4 signature: Pith builds arrays on blank devices only", notRan: []string{"modprobe", "mdadm"}},
		{name: "array member with a partition table", plan: raid, blkid: map[string]string{"/dev/vdb": "PTTYPE=gpt\n"},
			err: "/dev/vdb holds a gpt partition table", notRan: []string{"mdadm"}},
		{name: "mdadm fails", plan: raid, fail: "mdadm --create",
			err: "array md: mdadm --create /dev/md/md --run --level raid1 --raid-devices 2 --metadata=1.2 --homehost=any /dev/vdb /dev/vdc: exit status 1: it failed ... for this reason", notRan: []string{"mdadm --detail", "cryptsetup"}},
		{name: "modules missing", plan: raid, fail: "modprobe -a md_mod",
			err: "storage.raid: modprobe md_mod raid1", notRan: []string{"mdadm"}},
		{name: "volume device holding xfs", plan: luks(Luks{}), blkid: map[string]string{"/dev/vdb": "TYPE=xfs\n"},
			err: "volume c: /dev/vdb holds a xfs signature; set wipeVolume", notRan: []string{"cryptsetup", "wipefs"}},
		{name: "wipeVolume wipes first", plan: luks(Luks{Wipe: true}), blkid: map[string]string{"/dev/vdb": "TYPE=xfs\n"},
			ran: []string{"wipefs -a /dev/vdb", "cryptsetup luksFormat --type luks2 --batch-mode --key-file /etc/pith/luks/c.key --pbkdf pbkdf2 --pbkdf-force-iterations 1000 /dev/vdb"}},
		{name: "existing LUKS2 reused with the keyFile", plan: luks(Luks{Key: []byte("k"), Label: "l"}), blkid: map[string]string{"/dev/vdb": "TYPE=crypto_LUKS\nUUID=u\nLABEL=l\n"},
			ran: []string{"cryptsetup isLuks --type luks2 /dev/vdb", "cryptsetup luksOpen /dev/vdb c --key-file /etc/pith/luks/c.key --persistent"}, notRan: []string{"cryptsetup luksFormat", "wipefs"}},
		{name: "existing LUKS with another label", plan: luks(Luks{Key: []byte("k"), Label: "l"}), blkid: map[string]string{"/dev/vdb": "TYPE=crypto_LUKS\nUUID=u\nLABEL=old\n"},
			err: `labelled "old", not "l"`, notRan: []string{"cryptsetup"}},
		{name: "existing LUKS1", plan: luks(Luks{Key: []byte("k")}), blkid: map[string]string{"/dev/vdb": "TYPE=crypto_LUKS\nUUID=u\n"}, fail: "cryptsetup isLuks",
			err: "not LUKS2", notRan: []string{"cryptsetup luksOpen"}},
		{name: "existing LUKS without a keyFile", plan: luks(Luks{}), blkid: map[string]string{"/dev/vdb": "TYPE=crypto_LUKS\nUUID=u\n"},
			err: "reused only with a keyFile and without clevis", notRan: []string{"cryptsetup"}},
		{name: "existing LUKS with the TPM", plan: luks(Luks{Key: []byte("k"), TPM2: true}), blkid: map[string]string{"/dev/vdb": "TYPE=crypto_LUKS\nUUID=u\n"},
			err: "reused only with a keyFile and without clevis", notRan: []string{"cryptsetup", "systemd-cryptenroll"}},
		{name: "no TPM", plan: luks(Luks{TPM2: true}), fail: "systemd-cryptenroll",
			err: "systemd-cryptenroll --tpm2-device=auto: exit status 1: it failed ... for this reason (is there a TPM 2.0", notRan: []string{"cryptsetup luksOpen", "cryptsetup luksRemoveKey"}},
		{name: "TPM cannot open what it sealed", plan: luks(Luks{TPM2: true}), fail: "cryptsetup luksOpen",
			err: "opening through the TPM just enrolled", notRan: []string{"cryptsetup luksRemoveKey"}},
		{name: "TPM with a keyFile keeps the key slot", plan: luks(Luks{TPM2: true, Key: []byte("k")}),
			ran: []string{"cryptsetup luksOpen /dev/vdb c --token-only --token-type systemd-tpm2 --persistent"}, notRan: []string{"cryptsetup luksRemoveKey"}},
		{name: "closing fails", plan: luks(Luks{}), fail: "cryptsetup luksClose",
			err: "volume c: cryptsetup luksClose: exit status 1: for this reason"},
		{name: "optional crypto modules missing", plan: luks(Luks{}), fail: "modprobe -a -q",
			ran: []string{"cryptsetup luksOpen /dev/vdb c --key-file /etc/pith/luks/c.key --persistent"}},
		{name: "array member on the boot disk", plan: &Plan{Raid: []Raid{{Name: "md", Level: "raid1", Devices: []string{"/dev/vda", "/dev/vdc"}}}},
			err: "/dev/vda is /dev/vda, on the boot disk vda", notRan: []string{"blkid", "modprobe", "mdadm"}},
		{name: "volume on the boot disk", plan: &Plan{Luks: []Luks{{Name: "c", Device: "/dev/vda"}}},
			err: "on the boot disk vda", notRan: []string{"blkid", "cryptsetup"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			r := newFakeTools(root)
			for k, v := range tc.blkid {
				r.blkid[k] = v
			}
			if tc.fail != "" {
				r.fail[tc.fail] = true
			}
			err := Apply(tc.plan, fakeEnv(root, r))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Apply: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Apply = %v, want %q", err, tc.err)
			}
			for _, w := range tc.ran {
				if !contains(r.calls, w) {
					t.Errorf("no %q in\n%s", w, strings.Join(r.calls, "\n"))
				}
			}
			for _, n := range tc.notRan {
				for _, c := range r.calls {
					if strings.HasPrefix(c, n) {
						t.Errorf("%q ran:\n%s", c, strings.Join(r.calls, "\n"))
					}
				}
			}
			if tc.err != "" && tc.fail != "cryptsetup luksClose" {
				if _, err := os.Stat(filepath.Join(root, Crypttab)); !os.IsNotExist(err) {
					t.Errorf("crypttab written by a failed apply: %v", err)
				}
			}
		})
	}
}

func TestMdadmCreateArgs(t *testing.T) {
	got := strings.Join(mdadmCreateArgs(Raid{Name: "r5", Level: "raid5", Spares: 1, Options: []string{"--chunk=256", "--bitmap=internal"}}, []string{"/dev/a", "/dev/b", "/dev/c", "/dev/d"}), " ")
	want := "--create /dev/md/r5 --run --level raid5 --raid-devices 3 --metadata=1.2 --homehost=any --spare-devices 1 --chunk=256 --bitmap=internal /dev/a /dev/b /dev/c /dev/d"
	if got != want {
		t.Errorf("%s\nwant\n%s", got, want)
	}
}
