package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	def := builtin()
	tests := []struct {
		name string
		yaml string
		want func(*Config) // edits applied to the defaults
		err  string        // substring of the error; "" = no error
	}{
		{name: "empty file", yaml: "", want: func(*Config) {}},
		{name: "only comments", yaml: "# nothing\n", want: func(*Config) {}},
		{name: "full", yaml: `
version: 1.2.3
platform: vagrant
debian:
  suite: trixie
  mirror: https://mirror.example/debian/
  packages: [htop, vim-tiny, g++]
  kernel: linux-image-amd64
disk:
  size: 8GiB
formats: [qcow2, box]
source_date_epoch: 1700000000
`, want: func(c *Config) {
			c.Version, c.Platform = "1.2.3", "vagrant"
			c.Suite, c.Mirror = "trixie", "https://mirror.example/debian/"
			c.Packages = []string{"htop", "vim-tiny", "g++"}
			c.KernelPackage = "linux-image-amd64"
			c.DiskSize = 8 << 30
			c.Formats = []string{"qcow2", "box"}
			c.Epoch = 1700000000
		}},
		{name: "release keys", yaml: "release_keys: [k/a.pub, /abs/b.pub]\n", want: func(c *Config) { c.ReleaseKeys = []string{"k/a.pub", "/abs/b.pub"} }},
		{name: "release key twice", yaml: "release_keys:\n  - a.pub\n  - a.pub\n", err: `pith.yaml:3: release_keys: "a.pub" is listed twice`},
		{name: "release key empty", yaml: "release_keys: ['']\n", err: `pith.yaml:1: release_keys: empty path`},
		{name: "release keys not a list", yaml: "release_keys: a.pub\n", err: `release_keys: expected a list`},
		{name: "numeric version keeps its text", yaml: "version: 1.10\n", want: func(c *Config) { c.Version = "1.10" }},
		{name: "size in bytes", yaml: "disk:\n  size: 3221225472\n", want: func(c *Config) { c.DiskSize = 3 << 30 }},
		{name: "size G", yaml: "disk: {size: 2G}\n", want: func(c *Config) { c.DiskSize = 2 << 30 }},
		{name: "empty section", yaml: "debian:\n", want: func(*Config) {}},
		{name: "null packages", yaml: "debian:\n  packages:\n", want: func(c *Config) { c.Packages = nil }},
		{name: "one pinned suite", yaml: "debian:\n  suites: [bookworm]\n", want: func(c *Config) { c.Suites = []string{"bookworm"} }},
		{name: "suites before suite", yaml: "debian:\n  suites: [trixie, trixie-security]\n  suite: trixie\n", want: func(c *Config) { c.Suite, c.Suites = "trixie", []string{"trixie", "trixie-security"} }},
		{name: "security mirror", yaml: "debian:\n  security_mirror: http://security.example/debian-security\n", want: func(c *Config) { c.SecurityMirror = "http://security.example/debian-security" }},
		{name: "suite of another release", yaml: "debian:\n  suites:\n    - bookworm\n    - trixie-security\n", err: `pith.yaml: debian.suites: "trixie-security" is not an archive suite of bookworm`},
		{name: "suite unknown", yaml: "debian:\n  suites:\n    - bookworm\n    - bookworm-nightly\n", err: `pith.yaml:4: debian.suites: "bookworm-nightly" is not a Debian archive suite`},
		{name: "suites without the release", yaml: "debian:\n  suites: [bookworm-security]\n", err: `debian.suites: the release bookworm itself is missing`},
		{name: "suite twice", yaml: "debian:\n  suites: [bookworm, bookworm]\n", err: `debian.suites: "bookworm" is listed twice`},
		{name: "block list", yaml: "debian:\n  packages:\n    - htop\n    - jq\n", want: func(c *Config) { c.Packages = []string{"htop", "jq"} }},

		{name: "unknown top key with hint", yaml: "version: 1.0\ndebain:\n  suite: bookworm\n", err: `pith.yaml:2: unknown key "debain": did you mean "debian"?`},
		{name: "unknown nested key", yaml: "debian:\n  suit: bookworm\n", err: `pith.yaml:2: unknown key "debian.suit": did you mean "debian.suite"?`},
		{name: "unknown key far from any", yaml: "colour: blue\n", err: `pith.yaml:1: unknown key "colour": remove it (keys here: arch, debian, disk, formats, platform, release_keys, source_date_epoch, version)`},
		{name: "duplicate key", yaml: "platform: qemu\nplatform: ec2\n", err: `pith.yaml:2: key "platform" is already set at line 1`},
		{name: "size with space", yaml: "disk:\n  size: 4 GB\n", err: `pith.yaml:2: disk.size: "4 GB" is not a size: use e.g. 4GiB`},
		{name: "size decimal unit", yaml: "disk:\n  size: 4GB\n", err: `disk.size: "4GB" is not a size`},
		{name: "size negative", yaml: "disk:\n  size: -1\n", err: `"-1" is not a size`},
		{name: "size not sector multiple", yaml: "disk:\n  size: 1000\n", err: `pith.yaml:2: disk.size: 1000 bytes is not a multiple of 512-byte sectors`},
		{name: "size zero", yaml: "disk:\n  size: 0\n", err: `disk.size: 0 is not a disk size`},
		{name: "size huge", yaml: "disk:\n  size: 100TiB\n", err: `disk.size: 100TiB is larger than 64TiB`},
		{name: "size list", yaml: "disk:\n  size: [4GiB]\n", err: `disk.size: expected a value, got a list`},
		{name: "disk not mapping", yaml: "disk: 4GiB\n", err: `pith.yaml:1: disk: expected a mapping of keys (size), got "4GiB"`},
		{name: "top not mapping", yaml: "- a\n- b\n", err: `pith.yaml:1: the file: expected a mapping of keys`},
		{name: "arch arm64 takes its cloud kernel", yaml: "arch: arm64\n", want: func(c *Config) { c.Arch, c.KernelPackage = "arm64", "linux-image-cloud-arm64" }},
		{name: "arch arm64 keeps a named kernel", yaml: "arch: arm64\ndebian:\n  kernel: linux-image-arm64\n", want: func(c *Config) { c.Arch, c.KernelPackage = "arm64", "linux-image-arm64" }},
		{name: "bad arch", yaml: "arch: x86_64\n", err: `pith.yaml:1: arch: "x86_64" is not a machine architecture: use one of amd64, arm64`},
		{name: "bad platform", yaml: "platform: aws\n", err: `pith.yaml:1: platform: "aws" is not a platform: use one of qemu, vagrant, ec2`},
		{name: "bad suite", yaml: "debian:\n  suite: bokworm\n", err: `pith.yaml:2: debian.suite: "bokworm" is not a Debian suite`},
		{name: "mirror ftp", yaml: "debian:\n  mirror: ftp://ftp.debian.org/debian\n", err: `debian.mirror: "ftp://ftp.debian.org/debian" is not a Debian mirror URL`},
		{name: "mirror no host", yaml: "debian:\n  mirror: http:///debian\n", err: `is not a Debian mirror URL`},
		{name: "mirror relative", yaml: "debian:\n  mirror: deb.debian.org/debian\n", err: `is not a Debian mirror URL`},
		{name: "package uppercase", yaml: "debian:\n  packages:\n    - htop\n    - Vim\n", err: `pith.yaml:4: debian.packages: "Vim" is not a Debian package name`},
		{name: "package one char", yaml: "debian:\n  packages: [a]\n", err: `"a" is not a Debian package name`},
		{name: "package with version", yaml: "debian:\n  packages: [htop=3.2]\n", err: `"htop=3.2" is not a Debian package name`},
		{name: "package starts with dash", yaml: "debian:\n  packages: [-rf]\n", err: `"-rf" is not a Debian package name`},
		{name: "package listed twice", yaml: "debian:\n  packages: [jq, jq]\n", err: `"jq" is listed twice`},
		{name: "packages not a list", yaml: "debian:\n  packages: htop\n", err: `pith.yaml:2: debian.packages: expected a list, got "htop": use e.g. [htop, vim]`},
		{name: "package item is map", yaml: "debian:\n  packages:\n    - htop\n    - {a: b}\n", err: `pith.yaml:4: debian.packages: expected a value, got a mapping`},
		{name: "kernel bad", yaml: "debian:\n  kernel: Linux\n", err: `debian.kernel: "Linux" is not a Debian package name`},
		{name: "format unknown", yaml: "formats: [raw, vmdk]\n", err: `formats: "vmdk" is not a format: use one of raw, qcow2, box, ec2`},
		{name: "formats empty", yaml: "formats: []\n", err: `formats: no output format`},
		{name: "formats twice", yaml: "formats: [raw, raw]\n", err: `"raw" is listed twice`},
		{name: "format line", yaml: "formats:\n  - raw\n  - vmdk\n", err: `pith.yaml:3: formats: "vmdk" is not a format`},
		{name: "epoch text", yaml: "source_date_epoch: yesterday\n", err: `source_date_epoch: "yesterday" is not a Unix time`},
		{name: "epoch float", yaml: "source_date_epoch: 1.5e9\n", err: `is not a Unix time`},
		{name: "epoch before 1980", yaml: "source_date_epoch: 0\n", err: `source_date_epoch: 0 is outside 1980-01-01..2100-01-01`},
		{name: "version with space", yaml: "version: \"1 2\"\n", err: `version: "1 2" is not a version`},
		{name: "version empty", yaml: "version: \"\"\n", err: `version: "" is not a version`},
		{name: "version null", yaml: "version:\n", err: `version: expected a value, got nothing`},
		{name: "tab indentation", yaml: "debian:\n\tsuite: bookworm\n", err: `pith.yaml:2: not valid YAML (found character that cannot start any token)`},
		{name: "two documents", yaml: "version: 1.0\n---\nversion: 2.0\n", err: `a second YAML document`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.yaml), "pith.yaml")
			if tt.err != "" {
				if err == nil {
					t.Fatalf("Parse succeeded (%+v), want error containing %q", got, tt.err)
				}
				if !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %q does not contain %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := def
			want.Packages = nil
			want.Formats = append([]string(nil), def.Formats...)
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512", 512, true},
		{"1B", 1, true},
		{"4K", 4096, true},
		{"4KiB", 4096, true},
		{"3M", 3 << 20, true},
		{"4GiB", 4 << 30, true},
		{"1T", 1 << 40, true},
		{"2TiB", 2 << 40, true},
		{"4gib", 0, false},
		{"4.5GiB", 0, false},
		{"GiB", 0, false},
		{"", 0, false},
		{" 4GiB", 0, false},
		{"99999999999999999999", 0, false},
		{"9999999TiB", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for in, want := range map[int64]string{4 << 30: "4GiB", 1536 << 20: "1536MiB", 512: "512B", 3 << 40: "3TiB", 0: "0B", 2048: "2KiB"} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
		if in > 0 {
			if back, err := ParseSize(FormatSize(in)); err != nil || back != in {
				t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", in, back, err)
			}
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	t.Setenv(EpochEnv, "")
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if c.Epoch != DefaultEpoch || c.Suite != "bookworm" || c.DiskSize != 4<<30 {
		t.Fatalf("unexpected defaults %+v", c)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		err  string
	}{
		{"ok", func(*Config) {}, ""},
		{"platform", func(c *Config) { c.Platform = "" }, `platform: "" is not a platform`},
		{"mirror", func(c *Config) { c.Mirror = "not a url" }, `debian.mirror:`},
		{"packages", func(c *Config) { c.Packages = []string{"ok", "NO"} }, `debian.packages: "NO"`},
		{"kernel", func(c *Config) { c.KernelPackage = "" }, `debian.kernel:`},
		{"disk", func(c *Config) { c.DiskSize = 513 }, `disk.size:`},
		{"formats", func(c *Config) { c.Formats = nil }, `formats: no output format`},
		{"epoch", func(c *Config) { c.Epoch = 5000000000 }, `source_date_epoch:`},
		{"version", func(c *Config) { c.Version = "-x" }, `version:`},
	}
	for _, tt := range tests {
		c := builtin()
		tt.edit(&c)
		err := c.Validate()
		if tt.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		}
	}
}

func TestLoadEpochPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pith.yaml")
	if err := os.WriteFile(path, []byte("source_date_epoch: 1600000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env  string
		path string
		want int64
		err  string
	}{
		{"", "", DefaultEpoch, ""},
		{"", path, 1600000000, ""},
		{"1650000000", path, 1650000000, ""},
		{"1650000000", "", 1650000000, ""},
		{"soon", path, 0, `SOURCE_DATE_EPOCH="soon" is not a Unix time`},
		{"12", "", 0, `SOURCE_DATE_EPOCH: 12 is outside`},
		{"", filepath.Join(dir, "missing.yaml"), 0, "does not exist"},
	}
	for _, tt := range tests {
		t.Setenv(EpochEnv, tt.env)
		c, err := Load(tt.path)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("env=%q path=%q: error %v, want %q", tt.env, tt.path, err, tt.err)
			}
			continue
		}
		if err != nil || c.Epoch != tt.want {
			t.Errorf("env=%q path=%q: epoch %d, %v; want %d", tt.env, tt.path, c.Epoch, err, tt.want)
		}
	}
	// Default ignores an invalid environment value rather than failing.
	t.Setenv(EpochEnv, "soon")
	if Default().Epoch != DefaultEpoch {
		t.Errorf("Default() took an invalid SOURCE_DATE_EPOCH")
	}
}

func TestArchives(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		lines []string
	}{
		{"default: release, updates, security", func(*Config) {}, []string{
			"deb http://deb.debian.org/debian bookworm main",
			"deb http://deb.debian.org/debian bookworm-updates main",
			"deb http://deb.debian.org/debian-security bookworm-security main",
		}},
		{"pinned to the release", func(c *Config) { c.Suites = []string{"bookworm"} }, []string{"deb http://deb.debian.org/debian bookworm main"}},
		{"unstable has no security suite", func(c *Config) { c.Suite = "sid" }, []string{"deb http://deb.debian.org/debian sid main"}},
		{"mirrors", func(c *Config) {
			c.Suite, c.Mirror, c.SecurityMirror = "trixie", "https://m.example/debian/", "https://s.example/ds/"
		}, []string{
			"deb https://m.example/debian trixie main",
			"deb https://m.example/debian trixie-updates main",
			"deb https://s.example/ds trixie-security main",
		}},
	}
	for _, tt := range tests {
		c := builtin()
		tt.edit(&c)
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := archiveLines(c.Archives()); !reflect.DeepEqual(got, tt.lines) {
			t.Errorf("%s: sources\n got %q\nwant %q", tt.name, got, tt.lines)
		}
	}
}

func TestHash(t *testing.T) {
	base := builtin()
	h := base.Hash()
	if len(h) != 64 {
		t.Fatalf("hash %q is not hex sha256", h)
	}
	same := []func(*Config){
		func(c *Config) { c.Platform = "ec2" },
		func(c *Config) { c.DiskSize = 8 << 30 },
		func(c *Config) { c.Formats = []string{"raw"} },
		func(c *Config) { c.Mirror += "/" },
		func(c *Config) { c.Packages = []string{} },
		// The default suites spelled out are the defaults.
		func(c *Config) { c.Suites = []string{"bookworm", "bookworm-updates", "bookworm-security"} },
	}
	for i, edit := range same {
		c := builtin()
		edit(&c)
		if c.Hash() != h {
			t.Errorf("edit %d changed the hash but does not affect the rootfs", i)
		}
	}
	a, b := builtin(), builtin()
	a.Packages, b.Packages = []string{"jq", "htop"}, []string{"htop", "jq"}
	if a.Hash() != b.Hash() {
		t.Errorf("package order changed the hash")
	}
	differ := []func(*Config){
		func(c *Config) { c.Version = "0.2.0" },
		func(c *Config) { c.Suite = "trixie" },
		func(c *Config) { c.Mirror = "http://ftp.de.debian.org/debian" },
		func(c *Config) { c.Packages = []string{"htop"} },
		func(c *Config) { c.KernelPackage = "linux-image-amd64" },
		func(c *Config) { c.Epoch++ },
		func(c *Config) { c.Suites = []string{"bookworm"} },
		func(c *Config) { c.SecurityMirror = "http://security.example/debian-security" },
	}
	seen := map[string]int{h: -1}
	for i, edit := range differ {
		c := builtin()
		edit(&c)
		if j, dup := seen[c.Hash()]; dup {
			t.Errorf("edit %d gives the same hash as %d", i, j)
		}
		seen[c.Hash()] = i
	}
}

// The commented example in the repository (image/pith.yaml.example) must
// stay a valid config that builds the default image.
func TestExampleFile(t *testing.T) {
	t.Setenv(EpochEnv, "")
	c, err := Load("../pith.yaml.example")
	if err != nil {
		t.Fatalf("pith.yaml.example: %v", err)
	}
	if want := builtin(); !reflect.DeepEqual(c, want) {
		t.Errorf("the example differs from the defaults:\n got %+v\nwant %+v", c, want)
	}
}

// Key paths in a config file are relative to that file, not to the
// directory pith build runs in.
func TestLoadReleaseKeysRelativeToConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "pith.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("release_keys: [keys/a.pub, /abs/b.pub]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EpochEnv, "")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "sub", "keys", "a.pub"), "/abs/b.pub"}
	if !reflect.DeepEqual(c.ReleaseKeys, want) {
		t.Errorf("release keys %q, want %q", c.ReleaseKeys, want)
	}
}

func TestArch(t *testing.T) {
	tests := []struct {
		name, arch, kernel string // kernel "" keeps the default
		wantKernel, err    string
	}{
		{name: "default", arch: "amd64", wantKernel: "linux-image-cloud-amd64"},
		{name: "arm64 switches the default kernel", arch: "arm64", wantKernel: "linux-image-cloud-arm64"},
		{name: "arm64 keeps a chosen kernel", arch: "arm64", kernel: "linux-image-arm64", wantKernel: "linux-image-arm64"},
		{name: "amd64 kernel in an arm64 image", arch: "arm64", kernel: "linux-image-amd64", err: "arch: debian.kernel linux-image-amd64 is an amd64 kernel, the image is arm64: use linux-image-cloud-arm64"},
		{name: "unknown arch", arch: "riscv64", err: `arch: "riscv64" is not a machine architecture: use one of amd64, arm64`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			if tt.kernel != "" {
				c.KernelPackage = tt.kernel
			}
			c.SetArch(tt.arch)
			err := c.Validate()
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Validate: %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || c.KernelPackage != tt.wantKernel {
				t.Fatalf("Validate: %v, kernel %s, want nil and %s", err, c.KernelPackage, tt.wantKernel)
			}
		})
	}
	// amd64's digest leaves the arch out (caches stay valid); arm64's differs.
	a, b := Default(), Default()
	b.SetArch("arm64")
	b.KernelPackage = a.KernelPackage
	if a.Hash() == b.Hash() {
		t.Error("amd64 and arm64 configs hash alike")
	}
}
