// Package config reads and checks pith.yaml, the build configuration of a Pith
// image. The file is strict: an unknown key, a wrong type or a bad value is
// one error line naming the file, the line and the fix, so a typo never
// silently falls back to a default.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Config is everything `pith build` needs to know about the image.
type Config struct {
	Version  string // "version": OS version string
	Platform string // "platform": qemu | vagrant | ec2
	Arch     string // "arch": the machine architecture, amd64 | arm64 (Debian's and Go's names)
	Suite    string // "debian.suite": the release (codename or alias)
	Mirror   string // "debian.mirror"
	// Suites ("debian.suites") are the archive suites packages come from;
	// empty means DefaultSuites(Suite): the release, its -updates and its
	// -security archive. A config may pin the release alone.
	Suites []string
	// SecurityMirror ("debian.security_mirror") serves the -security suites:
	// Debian publishes them in a separate archive.
	SecurityMirror string
	Packages       []string // "debian.packages": extra packages on top of the base set
	KernelPackage  string   // "debian.kernel"
	DiskSize       int64    // "disk.size" in bytes
	Formats        []string // "formats"
	Epoch          int64    // SOURCE_DATE_EPOCH env > "source_date_epoch" > DefaultEpoch
	// ReleaseKeys ("release_keys") are PEM ed25519 public key files baked
	// into USR as the keys the node's update agent trusts. Load resolves
	// paths relative to the config file; pith build --release-key adds more.
	ReleaseKeys []string
}

// Built-in defaults: with no config file, these build a useful qemu image.
const (
	DefaultVersion  = "0.1.0"
	DefaultPlatform = "qemu"
	DefaultArch     = "amd64"
	DefaultSuite    = "bookworm"
	DefaultMirror   = "http://deb.debian.org/debian"
	// DefaultSecurityMirror is Debian's security archive on the same CDN
	// (https://www.debian.org/security/: "deb http://deb.debian.org/debian-security").
	DefaultSecurityMirror = "http://deb.debian.org/debian-security"
	DefaultKernelPackage  = "linux-image-cloud-amd64"
	DefaultDiskSize       = 4 << 30
	// DefaultEpoch (2026-01-01T00:00:00Z) is the timestamp of every file when
	// neither SOURCE_DATE_EPOCH nor source_date_epoch is set: a fixed value
	// keeps default builds reproducible.
	DefaultEpoch int64 = 1767225600
)

// EpochEnv is the environment variable that overrides source_date_epoch
// (https://reproducible-builds.org/specs/source-date-epoch/).
const EpochEnv = "SOURCE_DATE_EPOCH"

// Accepted values of the enumerated fields.
var (
	Platforms = []string{"qemu", "vagrant", "ec2"}
	// Arches are the architectures an image can be built for; Debian and
	// Go name them alike.
	Arches = []string{"amd64", "arm64"}
	// FormatNames lists the output formats a config may name. ec2 is the
	// raw import disk of an ec2-platform image (pith ami upload); box is
	// accepted here so configs stay valid as the builder grows it, and the
	// builder reports a format it cannot write yet. iso and pxe are the
	// live system (image/live), made from pith.img.
	FormatNames = []string{"raw", "qcow2", "box", "ec2", "iso", "pxe"}
	// Suites are the Debian codenames and aliases a config may name.
	Suites = []string{"bullseye", "bookworm", "trixie", "forky", "sid", "oldstable", "stable", "testing", "unstable"}
)

// Epoch bounds: FAT (the ESP) cannot store times before 1980 or after 2107.
const (
	minEpoch int64 = 315532800  // 1980-01-01T00:00:00Z
	maxEpoch int64 = 4102444800 // 2100-01-01T00:00:00Z
)

// Disk size bounds; the partition layout checks the real minimum.
const (
	sectorSize  = 512
	maxDiskSize = 64 << 40
)

// Default returns the built-in configuration, with SOURCE_DATE_EPOCH applied
// when it is set to a valid time. Use Load("") to also get an error for an
// invalid SOURCE_DATE_EPOCH.
func Default() Config {
	c := builtin()
	if e, ok, err := envEpoch(); err == nil && ok {
		c.Epoch = e
	}
	return c
}

func builtin() Config {
	return Config{
		Version:        DefaultVersion,
		Platform:       DefaultPlatform,
		Arch:           DefaultArch,
		Suite:          DefaultSuite,
		Mirror:         DefaultMirror,
		SecurityMirror: DefaultSecurityMirror,
		KernelPackage:  DefaultKernelPackage,
		DiskSize:       DefaultDiskSize,
		Formats:        []string{"raw", "qcow2"},
		Epoch:          DefaultEpoch,
	}
}

// Load reads the YAML config at path on top of the defaults, applies
// SOURCE_DATE_EPOCH and validates the result. An empty path means "no config
// file": the defaults.
func Load(path string) (Config, error) {
	c := builtin()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return Config{}, fmt.Errorf("config %s does not exist: check the path, or omit --config to build the default image", path)
			}
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		if c, err = Parse(data, path); err != nil {
			return Config{}, err
		}
		// Key files next to the config are named relative to it, so the
		// config means the same from any working directory.
		for i, k := range c.ReleaseKeys {
			if !filepath.IsAbs(k) {
				c.ReleaseKeys[i] = filepath.Join(filepath.Dir(path), k)
			}
		}
	}
	e, ok, err := envEpoch()
	if err != nil {
		return Config{}, err
	}
	if ok {
		c.Epoch = e
	}
	return c, nil
}

func envEpoch() (int64, bool, error) {
	v, ok := os.LookupEnv(EpochEnv)
	if !ok || v == "" {
		return 0, false, nil
	}
	e, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s=%q is not a Unix time: unset it or use seconds, e.g. %d", EpochEnv, v, DefaultEpoch)
	}
	if err := checkEpoch(e); err != nil {
		return 0, false, fmt.Errorf("%s: %v", EpochEnv, err)
	}
	return e, true, nil
}

// Validate checks every field, for configs assembled in code (flags on top
// of a file). Load and Parse already validate.
func (c Config) Validate() error {
	checks := []struct {
		field string
		err   error
	}{
		{"version", checkVersion(c.Version)},
		{"platform", checkEnum(c.Platform, Platforms, "platform")},
		{"arch", checkArch(c.Arch, c.KernelPackage)},
		{"debian.suite", checkSuite(c.Suite)},
		{"debian.mirror", checkMirror(c.Mirror)},
		{"debian.suites", checkSuites(c.Suite, c.Suites)},
		{"debian.security_mirror", checkMirror(c.SecurityMirror)},
		{"debian.packages", checkPackages(c.Packages)},
		{"debian.kernel", checkPackage(c.KernelPackage)},
		{"disk.size", checkDiskSize(c.DiskSize)},
		{"formats", checkFormats(c.Formats)},
		{"source_date_epoch", checkEpoch(c.Epoch)},
		{"release_keys", checkReleaseKeys(c.ReleaseKeys)},
	}
	for _, ch := range checks {
		if ch.err != nil {
			return fmt.Errorf("%s: %v", ch.field, ch.err)
		}
	}
	return nil
}

// hashVersion changes when the meaning of a hashed field changes, so old
// cache entries are not reused.
const hashVersion = 2

// Hash is a stable digest of every field that affects the root filesystem
// (the Debian inputs, the version written into os-release, the epoch that
// clamps timestamps). Platform, disk size and formats do not change the root
// filesystem and are left out. The agent binaries are not part of Config:
// callers caching a whole USR image must hash those too.
func (c Config) Hash() string {
	pkgs := append([]string{}, c.Packages...)
	slices.Sort(pkgs)
	pkgs = slices.Compact(pkgs)
	b, _ := json.Marshal(struct {
		V        int      `json:"v"`
		Version  string   `json:"version"`
		Suite    string   `json:"suite"`
		Mirror   string   `json:"mirror"`
		Archives []string `json:"archives"`
		Packages []string `json:"packages"`
		Kernel   string   `json:"kernel"`
		Epoch    int64    `json:"epoch"`
		// Arch is left out for amd64, so amd64 digests stay what they were.
		Arch string `json:"arch,omitempty"`
	}{hashVersion, c.Version, c.Suite, NormalizeMirror(c.Mirror), archiveLines(c.Archives()), pkgs, c.KernelPackage, c.Epoch, c.nonDefaultArch()})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// NormalizeMirror drops trailing slashes so equal mirrors compare equal.
func NormalizeMirror(m string) string { return strings.TrimRight(m, "/") }

var versionRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._+~-]{0,63}$`)

func checkVersion(v string) error {
	if !versionRE.MatchString(v) {
		return fmt.Errorf("%q is not a version: use letters, digits and . _ + ~ - (at most 64), e.g. %s", v, DefaultVersion)
	}
	return nil
}

func checkEnum(v string, allowed []string, what string) error {
	if !slices.Contains(allowed, v) {
		return fmt.Errorf("%q is not a %s: use one of %s", v, what, strings.Join(allowed, ", "))
	}
	return nil
}

func checkSuite(s string) error {
	if !slices.Contains(Suites, s) {
		return fmt.Errorf("%q is not a Debian suite: use one of %s", s, strings.Join(Suites, ", "))
	}
	return nil
}

func checkMirror(m string) error {
	u, err := url.Parse(m)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not a Debian mirror URL: use http(s)://host/path, e.g. %s", m, DefaultMirror)
	}
	return nil
}

// Debian policy 5.6.1: at least two characters, lower case letters, digits,
// + - and ., starting with a letter or digit.
var packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

func checkPackage(p string) error {
	if !packageRE.MatchString(p) {
		return fmt.Errorf("%q is not a Debian package name: use lower case letters, digits, + - . (e.g. htop)", p)
	}
	return nil
}

// itemError names the list item a value error is about, so the file's
// error can point at its line.
type itemError struct {
	index int
	err   error
}

func (e *itemError) Error() string { return e.err.Error() }

func checkPackages(ps []string) error {
	seen := map[string]bool{}
	for i, p := range ps {
		if err := checkPackage(p); err != nil {
			return &itemError{i, err}
		}
		if seen[p] {
			return &itemError{i, fmt.Errorf("%q is listed twice: remove one", p)}
		}
		seen[p] = true
	}
	return nil
}

func checkDiskSize(n int64) error {
	switch {
	case n <= 0:
		return fmt.Errorf("%d is not a disk size: use e.g. 4GiB", n)
	case n%sectorSize != 0:
		return fmt.Errorf("%d bytes is not a multiple of %d-byte sectors: use e.g. 4GiB", n, sectorSize)
	case n > maxDiskSize:
		return fmt.Errorf("%s is larger than %s: use e.g. 4GiB (first boot grows ROOT to the real disk)", FormatSize(n), FormatSize(maxDiskSize))
	}
	return nil
}

func checkFormats(fs []string) error {
	if len(fs) == 0 {
		return fmt.Errorf("no output format: name at least one of %s", strings.Join(FormatNames, ", "))
	}
	seen := map[string]bool{}
	for i, f := range fs {
		if err := checkEnum(f, FormatNames, "format"); err != nil {
			return &itemError{i, err}
		}
		if seen[f] {
			return &itemError{i, fmt.Errorf("%q is listed twice: remove one", f)}
		}
		seen[f] = true
	}
	return nil
}

// checkReleaseKeys checks the list's shape; the builder reads and parses
// the files (before any long work) and names a bad one.
func checkReleaseKeys(paths []string) error {
	seen := map[string]bool{}
	for i, p := range paths {
		if strings.TrimSpace(p) == "" {
			return &itemError{i, errors.New("empty path: name a public key file from `pith keygen` (pith-release.pub)")}
		}
		if seen[p] {
			return &itemError{i, fmt.Errorf("%q is listed twice: remove one", p)}
		}
		seen[p] = true
	}
	return nil
}

func checkEpoch(e int64) error {
	if e < minEpoch || e >= maxEpoch {
		return fmt.Errorf("%d is outside 1980-01-01..2100-01-01 (FAT timestamps): use e.g. %d", e, DefaultEpoch)
	}
	return nil
}

var sizeRE = regexp.MustCompile(`^([0-9]+)(B|K|KiB|M|MiB|G|GiB|T|TiB)?$`)

// ParseSize reads a size: bytes ("4294967296") or a number with a binary
// unit ("4GiB", "4G", "512MiB"; K, M, G, T are powers of 1024 too).
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: use e.g. 4GiB (units B, K/KiB, M/MiB, G/GiB, T/TiB, powers of 1024)", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large: use e.g. 4GiB", s)
	}
	shift := map[string]uint{"": 0, "B": 0, "K": 10, "KiB": 10, "M": 20, "MiB": 20, "G": 30, "GiB": 30, "T": 40, "TiB": 40}[m[2]]
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is too large: use e.g. 4GiB", s)
	}
	return n << shift, nil
}

// FormatSize prints n with the largest binary unit that divides it exactly.
func FormatSize(n int64) string {
	for _, u := range []struct {
		name  string
		shift uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n > 0 && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}
