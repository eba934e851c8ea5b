// Package apt reads and refreshes the apt indexes of a build's Debian
// archives (the release, -updates, -security): the lists a build installs
// from, and that `pith outdated` compares an image with. Fetching uses the
// host's apt-get with a private configuration, so apt verifies the archives'
// signatures and the host's own apt state is never touched.
package apt

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/image/config"
)

// Arch is the default architecture of lists (Lists.Arch empty).
const Arch = "amd64"

// Keyring verifies Debian's archives (package debian-archive-keyring).
const Keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// Lists are the apt indexes of a set of archives, in one directory.
type Lists struct {
	Dir      string
	Archives []config.Archive
	// Arch is the Debian architecture indexed (empty: Arch, amd64).
	Arch string
}

func (l Lists) arch() string {
	if l.Arch == "" {
		return Arch
	}
	return l.Arch
}

// ListsFor are the lists of archives for arch in cache: amd64's directory
// is ListsDir's (as before architectures), another architecture's is
// beside it with the architecture appended.
func ListsFor(cache string, archives []config.Archive, arch string) Lists {
	l := Lists{Dir: ListsDir(cache, archives), Archives: archives, Arch: arch}
	if l.arch() != Arch {
		l.Dir += "-" + arch
	}
	return l
}

// ListsDir is the cache directory of the archives' indexes: one per set of
// sources, so configs with other archives never share (or clobber) lists.
func ListsDir(cache string, archives []config.Archive) string {
	h := sha256.New()
	for _, a := range archives {
		fmt.Fprintln(h, a.SourcesLine())
	}
	return filepath.Join(cache, "debian", "lists", hex.EncodeToString(h.Sum(nil))[:16])
}

// FileName is apt's name for a URI in its lists directory (apt-pkg's
// URItoFileName): no scheme, some characters %-quoted, '/' as '_'.
func FileName(uri string) string {
	if _, rest, ok := strings.Cut(uri, "://"); ok {
		uri = rest
	}
	if at := strings.Index(uri, "@"); at >= 0 && at < strings.Index(uri+"/", "/") {
		uri = uri[at+1:]
	}
	var b strings.Builder
	for _, c := range []byte(uri) {
		if strings.IndexByte(`\|{}[]<>"^~_=!@#$%^&*`, c) >= 0 || c <= 0x20 || c >= 0x7f {
			fmt.Fprintf(&b, "%%%02x", c)
			continue
		}
		b.WriteByte(c)
	}
	return strings.ReplaceAll(b.String(), "/", "_")
}

// PackagesFile is the path of an archive's main/binary-<arch> index.
func (l Lists) PackagesFile(a config.Archive) string {
	return filepath.Join(l.Dir, FileName(a.URI+"/dists/"+a.Suite+"/main/binary-"+l.arch()+"/Packages"))
}

// Config writes a private apt configuration for these lists into dir and
// returns its path (for APT_CONFIG): the archives as sources, the lists
// directory, the lists' one architecture, no translations, and none of the host's settings.
func (l Lists) Config(dir string) (string, error) {
	etc := filepath.Join(dir, "etc")
	for _, d := range []string{filepath.Join(etc, "apt.conf.d"), filepath.Join(etc, "sources.list.d"), filepath.Join(dir, "cache"), filepath.Join(dir, "state"), filepath.Join(l.Dir, "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	var src strings.Builder
	for _, a := range l.Archives {
		fmt.Fprintf(&src, "deb [signed-by=%s] %s %s main\n", Keyring, a.URI, a.Suite)
	}
	if err := os.WriteFile(filepath.Join(etc, "sources.list"), []byte(src.String()), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), nil, 0o644); err != nil {
		return "", err
	}
	conf := fmt.Sprintf(`Dir::Etc "%s";
Dir::Etc::SourceList "%s";
Dir::Etc::SourceParts "%s";
Dir::Etc::Parts "%s";
Dir::Cache "%s";
Dir::State "%s";
Dir::State::Lists "%s";
Dir::State::status "%s";
APT::Architecture "%s";
APT::Architectures { "%s"; };
Acquire::Languages "none";
Acquire::Retries "3";
APT::Sandbox::User "root";
Debug::NoLocking "true";
`, etc, filepath.Join(etc, "sources.list"), filepath.Join(etc, "sources.list.d"), filepath.Join(etc, "apt.conf.d"),
		filepath.Join(dir, "cache"), filepath.Join(dir, "state"), l.Dir, filepath.Join(dir, "status"), l.arch(), l.arch())
	p := filepath.Join(dir, "apt.conf")
	return p, os.WriteFile(p, []byte(conf), 0o644)
}

// Fetch brings the lists up to date with the archives: nothing more than a
// request per archive when their InRelease files are the ones stored, else
// apt-get update (which checks the signatures). It runs in a scratch
// directory under work.
func (l Lists) Fetch(ctx context.Context, work string) error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("apt-get is not installed: pith build needs Debian's apt (make deps)")
	}
	if _, err := os.Stat(Keyring); err != nil {
		return fmt.Errorf("%s is missing: apt-get install debian-archive-keyring", Keyring)
	}
	if l.unchanged(ctx) {
		return nil
	}
	dir, err := os.MkdirTemp(work, "apt-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	conf, err := l.Config(dir)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "apt-get", "update", "-q", "--error-on=any")
	cmd.Env = append(os.Environ(), "APT_CONFIG="+conf, "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get update of %s: %v: %s", strings.Join(l.lines(), "; "), err, lastLines(out, 3))
	}
	for _, a := range l.Archives {
		if _, err := os.Stat(l.PackagesFile(a)); err != nil {
			return fmt.Errorf("apt-get update gave no index for %s: %v", a.SourcesLine(), err)
		}
	}
	return nil
}

// unchanged reports whether every archive still serves the InRelease file
// apt verified and stored before: then the indexes it lists are current
// and apt-get update (seconds of parsing on a small machine) is skipped.
// Any doubt (no file, an error, a difference) says no.
func (l Lists) unchanged(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res := make(chan bool, len(l.Archives))
	for _, a := range l.Archives {
		go func() {
			uri := a.URI + "/dists/" + a.Suite + "/InRelease"
			have, err := os.ReadFile(filepath.Join(l.Dir, FileName(uri)))
			if err != nil {
				res <- false
				return
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
			if err != nil {
				res <- false
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				res <- false
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(io.LimitReader(resp.Body, int64(len(have))+1))
			res <- err == nil && resp.StatusCode == http.StatusOK && bytes.Equal(got, have)
		}()
	}
	same := true
	for range l.Archives {
		same = <-res && same
	}
	return same
}

func (l Lists) lines() []string {
	var out []string
	for _, a := range l.Archives {
		out = append(out, a.SourcesLine())
	}
	return out
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// Digest identifies the archives' state: the content of every Packages
// index. Equal digests install equal package versions, so it keys the
// cached Debian tree; the (re-signed) Release files are left out on
// purpose, as a new signature changes no package.
func (l Lists) Digest() (string, error) {
	h := sha256.New()
	for _, a := range l.Archives {
		f, err := os.Open(l.PackagesFile(a))
		if err != nil {
			return "", fmt.Errorf("no apt index for %s (%v): the lists were not fetched", a.SourcesLine(), err)
		}
		fmt.Fprintf(h, "%s\n", a.SourcesLine())
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Candidate is one package version an archive offers.
type Candidate struct {
	Package  string
	Version  string
	Arch     string
	Source   string // source package name
	SourceV  string // source version (= Version unless the index says otherwise)
	Filename string // pool path of the .deb
	SHA256   string // of the .deb
	Archive  config.Archive
	Depends  string // the Depends field, as the index has it
}

// URL is where the .deb is downloaded from.
func (c Candidate) URL() string { return c.Archive.URI + "/" + c.Filename }

// Index holds every candidate of the lists, by package name, in archive
// order.
type Index map[string][]Candidate

// ReadIndex parses the archives' Packages files.
func (l Lists) ReadIndex() (Index, error) {
	idx := Index{}
	for _, a := range l.Archives {
		if err := readPackages(l.PackagesFile(a), a, idx); err != nil {
			return nil, err
		}
	}
	return idx, nil
}

// Find returns the candidate with exactly this version and architecture.
func (idx Index) Find(name, version, arch string) (Candidate, bool) {
	for _, c := range idx[name] {
		if c.Version == version && c.Arch == arch {
			return c, true
		}
	}
	return Candidate{}, false
}

func readPackages(path string, a config.Archive, idx Index) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("no apt index for %s (%v): the lists were not fetched", a.SourcesLine(), err)
	}
	defer f.Close()
	return ParseStanzas(f, func(fields map[string]string) {
		c := Candidate{
			Package: fields["Package"], Version: fields["Version"], Arch: fields["Architecture"],
			Filename: fields["Filename"], SHA256: fields["SHA256"], Archive: a, Depends: fields["Depends"],
		}
		c.Source, c.SourceV = SourceOf(fields["Source"], c.Package, c.Version)
		if c.Package != "" {
			idx[c.Package] = append(idx[c.Package], c)
		}
	}, "Package", "Version", "Architecture", "Source", "Filename", "SHA256", "Status", "Depends")
}

// DependNames are the packages a Depends field names: the first of each
// set of alternatives, without version or architecture qualifiers.
func DependNames(field string) []string {
	var out []string
	for _, d := range strings.Split(field, ",") {
		alt, _, _ := strings.Cut(d, "|")
		name := strings.Fields(strings.SplitN(alt, "(", 2)[0])
		if len(name) == 0 {
			continue
		}
		n, _, _ := strings.Cut(name[0], ":")
		out = append(out, n)
	}
	return out
}

// SourceOf splits a control file's Source field ("openssl" or
// "linux-signed-amd64 (6.1.192+3)"); empty means the binary's own name and
// version.
func SourceOf(field, pkg, version string) (name, ver string) {
	name, ver = pkg, version
	if field == "" {
		return
	}
	n, v, ok := strings.Cut(field, " ")
	name = n
	if ok {
		ver = strings.Trim(strings.TrimSpace(v), "()")
	}
	return
}

// ParseStanzas reads deb822 stanzas (Packages files, dpkg's status) and
// calls fn with the wanted single-line fields of each.
func ParseStanzas(r io.Reader, fn func(map[string]string), want ...string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	fields := map[string]string{}
	flush := func() {
		if len(fields) > 0 {
			fn(fields)
			fields = map[string]string{}
		}
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // continuation of a multi-line field
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		for _, w := range want {
			if string(k) == w {
				fields[w] = string(bytes.TrimSpace(v))
				break
			}
		}
	}
	flush()
	return sc.Err()
}
