package build

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/ami"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/layout"
)

// TestAssembleEC2: the ec2 platform's image is the raw GPT disk pith ami
// upload takes, with the EC2 kernel arguments in both slots and ec2 in OEM.
func TestAssembleEC2(t *testing.T) {
	in := fakeInputs(t)
	in.Config.Platform = "ec2"
	in.Config.Formats = []string{"ec2"}
	arts, m, err := Assemble(context.Background(), in, t.TempDir(), &Reporter{})
	if err != nil {
		t.Fatal(err)
	}
	img := arts[RawName]
	if img == "" || arts[Qcow2Name] != "" {
		t.Fatalf("artifacts %v, want pith.img only (and the manifest)", arts)
	}
	if len(m.Artifacts) != 1 || m.Artifacts[0].Name != RawName || m.Artifacts[0].Format != "raw" {
		t.Errorf("manifest artifacts %+v", m.Artifacts)
	}
	if _, err := ami.CheckImage(img, "uefi-preferred"); err != nil {
		t.Errorf("pith ami upload's check refuses the image: %v", err)
	}
	tool(t, "sgdisk", "-v", img)
	for _, s := range []string{"a", "b"} {
		for _, want := range []string{"pith.platform=ec2", "console=ttyS0,115200n8", "nvme_core.io_timeout=4294967295"} {
			if !strings.Contains(m.KernelCmdline[s], want) {
				t.Errorf("slot %s kernel line lacks %s: %s", s, want, m.KernelCmdline[s])
			}
		}
	}
	esp, _ := m.Partition(layout.LabelESP)
	// grub.cfg has slot a's line with the machine's own arguments
	// (grub/kargs) and the root hash read from verity-a.cfg.
	lineA, _, _ := strings.Cut(m.KernelCmdline["a"], " pith.usrhash=")
	if cfg := tool(t, "mtype", "-i", extract(t, img, esp), "::/grub/grub.cfg"); !strings.Contains(cfg, lineA+" ${pith_kargs} pith.usrhash=${pith_usrhash}\n") {
		t.Errorf("grub.cfg lacks slot a's line %q:\n%s", lineA, cfg)
	}
	oem, _ := m.Partition(layout.LabelOEM)
	if got := tool(t, "debugfs", "-R", "cat /pith/platform", extract(t, img, oem)); !strings.HasSuffix(got, "\nec2\n") {
		t.Errorf("OEM platform %q", got)
	}

	// Other platforms do not get EC2's arguments.
	in = fakeInputs(t)
	in.Config.Formats = []string{"raw"}
	_, mq, err := Assemble(context.Background(), in, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(mq.KernelCmdline["a"], "nvme_core") {
		t.Errorf("qemu image has EC2's arguments: %s", mq.KernelCmdline["a"])
	}
}

func TestEC2FormatNeedsPlatform(t *testing.T) {
	for _, tc := range []struct {
		platform string
		formats  []string
		want     string
	}{
		{"qemu", []string{"ec2"}, "format ec2 needs the ec2 platform, this build is for qemu: add --platform ec2"},
		{"vagrant", []string{"raw", "ec2"}, "this build is for vagrant"},
		{"ec2", []string{"ec2"}, ""},
		{"ec2", []string{"raw", "qcow2"}, ""},
		{"qemu", []string{"raw"}, ""},
	} {
		in := fakeInputs(t)
		in.Config.Platform, in.Config.Formats = tc.platform, tc.formats
		err := checkPlatformFormats(in.Config)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s %v: %v", tc.platform, tc.formats, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want %q", tc.platform, tc.formats, err, tc.want)
		}
		// Build refuses before any work, and creates nothing.
		out := filepath.Join(t.TempDir(), "out")
		if _, err := Build(context.Background(), Options{Config: in.Config, OutDir: out}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build %s %v: %v", tc.platform, tc.formats, err)
		}
	}
}

func TestCheckPlatformModules(t *testing.T) {
	for _, tc := range []struct {
		platform, arch string
		absent         []string
		want           string
	}{
		{"ec2", "amd64", nil, ""},
		{"ec2", "amd64", []string{"ahci"}, ""},
		{"ec2", "amd64", []string{"ena"}, "kernel 6.1.0-x lacks ena, needed on ec2"},
		{"ec2", "amd64", []string{"nvme", "xen_blkfront", "ahci"}, "lacks nvme, xen_blkfront, needed on ec2: use a kernel package"},
		{"ec2", "amd64", []string{"xen_blkfront"}, "lacks xen_blkfront"},
		// Graviton instances are all Nitro: no Xen block driver needed.
		{"ec2", "arm64", []string{"xen_blkfront"}, ""},
		{"ec2", "arm64", []string{"nvme", "xen_blkfront"}, "lacks nvme, needed on ec2"},
		{"ec2", "arm64", []string{"ena"}, "lacks ena, needed on ec2"},
		{"qemu", "amd64", []string{"ena", "nvme"}, ""},
		{"qemu", "arm64", []string{"ena", "nvme"}, ""},
	} {
		err := checkPlatformModules(tc.platform, tc.arch, "6.1.0-x", tc.absent)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s/%s absent %v: %v, want %q", tc.platform, tc.arch, tc.absent, err, tc.want)
		}
	}
	if got := PlatformModules["ec2"]; !slices.Equal(got, []string{"nvme", "ena", "xen_blkfront"}) {
		t.Errorf("modulesFor changed PlatformModules: %v", got)
	}
}

// TestCheckArchSupport: arm64 builds the ec2 platform and format like
// amd64 (UEFI only; pith ami registers it as an arm64 AMI), and is still
// refused what it cannot have, before any work.
func TestCheckArchSupport(t *testing.T) {
	for _, tc := range []struct {
		arch, platform string
		formats        []string
		secureBoot     bool
		want           string
	}{
		{"arm64", "ec2", []string{"ec2"}, false, ""},
		{"arm64", "ec2", []string{"raw", "qcow2"}, false, ""},
		{"arm64", "qemu", []string{"raw", "qcow2"}, false, ""},
		{"arm64", "qemu", []string{"ec2"}, false, "format ec2 needs the ec2 platform"},
		{"arm64", "vagrant", []string{"raw"}, false, "platform vagrant is amd64-only for now, this build is arm64: use platform qemu or ec2"},
		{"arm64", "ec2", []string{"ec2", "iso"}, false, "format iso is amd64-only for now"},
		{"arm64", "ec2", []string{"pxe"}, false, "format pxe is amd64-only for now"},
		{"arm64", "ec2", []string{"ec2"}, true, "--secure-boot-keys is amd64-only"},
		{"amd64", "vagrant", []string{"raw", "iso"}, true, ""},
	} {
		c := config.Default()
		c.SetArch(tc.arch)
		c.Platform, c.Formats = tc.platform, tc.formats
		err := checkTarget(c, tc.secureBoot)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s %s %v secure boot %v: %v, want %q", tc.arch, tc.platform, tc.formats, tc.secureBoot, err, tc.want)
		}
	}
}
