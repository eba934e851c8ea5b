package apply

import (
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
)

func TestInstallPlan(t *testing.T) {
	const key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	tests := []struct {
		name      string
		in        cloudconfig.PithInstall
		err       string
		files     int
		want, not []string // in the unit
	}{
		{name: "no section"},
		{name: "device without image", in: cloudconfig.PithInstall{Device: "/dev/vda"}, err: "both device and image"},
		{name: "defaults: power off", in: cloudconfig.PithInstall{Device: "/dev/vda", Image: "http://10.0.2.2:8080/pith.img.zst"},
			want: []string{"ConditionKernelCommandLine=pith.live", "ExecStart=/usr/bin/pithctl install --device /dev/vda --image http://10.0.2.2:8080/pith.img.zst\n", "ExecStartPost=/usr/bin/systemctl --no-block poweroff"},
			not:  []string{"--user-data", "--require-signature"}},
		{name: "user-data, key, force, reboot",
			in:    cloudconfig.PithInstall{Device: "/dev/sda", Image: "https://h/pith.img", Manifest: "https://h/m.json", UserData: "#cloud-config\n", PublicKeys: []string{key}, Force: true, After: "reboot"},
			files: 2,
			want:  []string{"--manifest https://h/m.json --force --user-data /run/pith/install/user-data.yml --key /run/pith/install/key-0.pub --require-signature", "systemctl --no-block reboot"}},
		{name: "stay up", in: cloudconfig.PithInstall{Device: "/dev/sda", Image: "https://h/pith.img", After: "none"}, not: []string{"ExecStartPost"}},
		{name: "bad key", in: cloudconfig.PithInstall{Device: "/dev/sda", Image: "https://h/pith.img", PublicKeys: []string{"xx"}}, err: "public_keys[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files, units, err := installPlan(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.in.Device == "" {
				if len(files)+len(units) != 0 {
					t.Fatalf("no section gave %v %v", files, units)
				}
				return
			}
			if len(files) != tc.files || len(units) != 1 || units[0].Name != InstallUnit || !units[0].Runtime || units[0].Command != "start" {
				t.Fatalf("files %d units %+v", len(files), units)
			}
			for _, w := range tc.want {
				if !strings.Contains(units[0].Content, w) {
					t.Errorf("unit lacks %q:\n%s", w, units[0].Content)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(units[0].Content, n) {
					t.Errorf("unit has %q:\n%s", n, units[0].Content)
				}
			}
			for _, f := range files {
				if strings.HasSuffix(f.Path, ".pub") && !strings.Contains(f.Content, "BEGIN PUBLIC KEY") {
					t.Errorf("key file %s: %q", f.Path, f.Content)
				}
				if strings.HasSuffix(f.Path, "user-data.yml") && (f.Permissions != "0600" || f.Content != tc.in.UserData) {
					t.Errorf("user-data file %+v", f)
				}
			}
		})
	}
}

func TestInstallSectionValidates(t *testing.T) {
	tests := []struct{ yaml, err string }{
		{yaml: "pith:\n  install:\n    device: /dev/vda\n    image: http://10.0.2.2/pith.img\n    after: poweroff\n"},
		{yaml: "pith:\n  install:\n    device: vda\n    image: http://10.0.2.2/pith.img\n", err: "device"},
		{yaml: "pith:\n  install:\n    device: /dev/vda\n    image: /srv/pith.img\n", err: "URL"},
		{yaml: "pith:\n  install:\n    device: /dev/vda\n    image: http://h/pith.img\n    after: halt\n", err: "after"},
	}
	for _, tc := range tests {
		rep := cloudconfig.Validate([]byte("#cloud-config\n" + tc.yaml))
		err := rep.Err()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.err)
		}
	}
}
