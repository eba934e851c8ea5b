package channels

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Version is a parsed release version. Pith's build stamps versions from
// `git describe --tags` (v1.2.3, v1.2.3-4-gabcdef0, v1.2.3-dirty) or plain
// semver strings (1.2.3, 1.2.3-rc.1, 1.2.3+build). Four numeric parts are
// allowed too, so CoreOS-style 1632.3.0 and date stamps like 2026.11.25.1 order.
type Version struct {
	raw      string
	core     [4]uint64
	pre      []string // semver pre-release identifiers; empty sorts after any
	distance uint64   // commits after the tag (git describe)
	commit   string   // abbreviated commit (git describe), not used for order
	dirty    bool
}

var describeRe = regexp.MustCompile(`^(.*?)-([0-9]+)-g([0-9a-f]{4,40})$`)

// ParseVersion parses s. A bare commit hash (what `git describe --always`
// prints in a repository without tags) is rejected because it has no order.
func ParseVersion(s string) (Version, error) {
	v := Version{raw: s}
	rest := strings.TrimPrefix(strings.TrimSpace(s), "v")
	if rest == "" {
		return v, fmt.Errorf("version %q: empty; use MAJOR.MINOR.PATCH, e.g. 1.2.3", s)
	}
	if i := strings.IndexByte(rest, '+'); i >= 0 { // build metadata: ignored for order
		rest = rest[:i]
	}
	if strings.HasSuffix(rest, "-dirty") {
		v.dirty = true
		rest = strings.TrimSuffix(rest, "-dirty")
	}
	core, suffix, dash := strings.Cut(rest, "-")
	if dash && suffix == "" {
		return v, fmt.Errorf("version %q: empty pre-release after '-'", s)
	}
	parts := strings.Split(core, ".")
	if len(parts) > 4 {
		return v, fmt.Errorf("version %q: more than 4 numeric parts; use MAJOR.MINOR.PATCH", s)
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || p == "" || (len(p) > 1 && p[0] == '0') {
			return v, fmt.Errorf("version %q: %q is not a number without leading zeros; use MAJOR.MINOR.PATCH, e.g. 1.2.3 (a bare commit hash has no order)", s, p)
		}
		v.core[i] = n
	}
	if suffix != "" {
		// Re-add the dash so "1.2.3-4-gabc" matches the describe pattern
		// with an empty pre-release.
		if m := describeRe.FindStringSubmatch("-" + suffix); m != nil {
			d, _ := strconv.ParseUint(m[2], 10, 64)
			v.distance, v.commit = d, m[3]
			suffix = strings.TrimPrefix(m[1], "-")
		}
	}
	if suffix != "" {
		for _, id := range strings.Split(suffix, ".") {
			if id == "" || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
				return v, fmt.Errorf("version %q: bad pre-release %q; use letters, digits, '-' and '.'", s, suffix)
			}
			v.pre = append(v.pre, id)
		}
	}
	return v, nil
}

// MustParseVersion is ParseVersion for constants in tests and callers that
// validated the string already.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

func (v Version) String() string { return v.raw }

// Dirty reports whether the version came from a tree with uncommitted changes.
func (v Version) Dirty() bool { return v.dirty }

// Compare returns -1, 0 or 1 as v is older than, the same as, or newer than w.
// Order: numeric core; then a pre-release sorts before the release (semver
// rules between pre-releases); then git-describe distance (commits after the
// tag sort after it). Build metadata, commit hash and -dirty do not count, so
// two dirty builds of one commit are the same version: release one of them.
func (v Version) Compare(w Version) int {
	for i := range v.core {
		if c := cmpUint(v.core[i], w.core[i]); c != 0 {
			return c
		}
	}
	if c := comparePre(v.pre, w.pre); c != 0 {
		return c
	}
	return cmpUint(v.distance, w.distance)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func comparePre(a, b []string) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		an, aerr := strconv.ParseUint(a[i], 10, 64)
		bn, berr := strconv.ParseUint(b[i], 10, 64)
		switch {
		case aerr == nil && berr == nil:
			if c := cmpUint(an, bn); c != 0 {
				return c
			}
		case aerr == nil: // numeric identifiers sort before alphanumeric ones
			return -1
		case berr == nil:
			return 1
		default:
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
	}
	return cmpUint(uint64(len(a)), uint64(len(b)))
}

// CompareVersions parses both strings and compares them.
func CompareVersions(a, b string) (int, error) {
	va, err := ParseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := ParseVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}
