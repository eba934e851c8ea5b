package config

import (
	"fmt"
	"slices"
	"strings"
)

// Archive is one apt source: a suite of a Debian archive (main component).
type Archive struct {
	URI   string // e.g. http://deb.debian.org/debian-security
	Suite string // e.g. bookworm-security
}

// SourcesLine is the archive as a one-line sources.list entry.
func (a Archive) SourcesLine() string { return "deb " + a.URI + " " + a.Suite + " main" }

// IsSecurity reports whether the archive is a -security suite: a package
// version first published there is a security fix.
func (a Archive) IsSecurity() bool { return strings.HasSuffix(a.Suite, "-security") }

// suiteKinds are the archive suites a release has beside itself.
var suiteKinds = []string{"-updates", "-security", "-backports", "-proposed-updates"}

// noSecurity are the releases Debian publishes no -security or -updates
// suite for.
var noSecurity = []string{"sid", "unstable"}

// DefaultSuites are the archive suites of a release: the release and, where
// Debian has them, its -updates and -security suites, so an image gets the
// release's fixes as of the build day.
func DefaultSuites(suite string) []string {
	if slices.Contains(noSecurity, suite) {
		return []string{suite}
	}
	return []string{suite, suite + "-updates", suite + "-security"}
}

// Archives resolves the config's suites to apt sources, in the config's
// order: -security suites come from SecurityMirror, the others from Mirror.
func (c Config) Archives() []Archive {
	suites := c.Suites
	if len(suites) == 0 {
		suites = DefaultSuites(c.Suite)
	}
	out := make([]Archive, 0, len(suites))
	for _, s := range suites {
		a := Archive{URI: NormalizeMirror(c.Mirror), Suite: s}
		if a.IsSecurity() {
			a.URI = NormalizeMirror(c.SecurityMirror)
		}
		out = append(out, a)
	}
	return out
}

func archiveLines(as []Archive) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.SourcesLine()
	}
	return out
}

// checkSuiteNames checks the form of each entry: a release, or a release
// with one of the suite kinds.
func checkSuiteNames(suites []string) error {
	for i, s := range suites {
		base := s
		for _, k := range suiteKinds {
			base = strings.TrimSuffix(base, k)
		}
		if !slices.Contains(Suites, base) {
			return &itemError{i, fmt.Errorf("%q is not a Debian archive suite: use a release (%s) optionally followed by one of %s", s, strings.Join(Suites, ", "), strings.Join(suiteKinds, ", "))}
		}
	}
	return nil
}

// checkSuites accepts the release itself plus its -updates, -security,
// -backports and -proposed-updates suites, each once, the release included.
func checkSuites(suite string, suites []string) error {
	if len(suites) == 0 {
		return nil
	}
	for i, s := range suites {
		if s != suite && !slices.ContainsFunc(suiteKinds, func(k string) bool { return s == suite+k }) {
			return &itemError{i, fmt.Errorf("%q is not an archive suite of %s: use %s or %s with one of %s", s, suite, suite, suite, strings.Join(suiteKinds, ", "))}
		}
		if slices.Index(suites, s) != i {
			return &itemError{i, fmt.Errorf("%q is listed twice: keep one", s)}
		}
	}
	if !slices.Contains(suites, suite) {
		return fmt.Errorf("the release %s itself is missing: list it first, e.g. [%s]", suite, strings.Join(DefaultSuites(suite), ", "))
	}
	return nil
}
