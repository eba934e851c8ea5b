// Package kmod resolves Linux kernel module dependencies. The image builder
// uses it to pick the modules that go into the initramfs (from modules.dep, or
// from each module's own modinfo when depmod never ran), and the init uses it
// to load them in dependency order.
package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Name normalises a module name: the kernel treats '-' and '_' alike and
// files may carry .ko, .ko.xz, .ko.zst or .ko.gz suffixes.
func Name(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(s, ext) {
			s = strings.TrimSuffix(s, ext)
			break
		}
	}
	return strings.ReplaceAll(s, "-", "_")
}

// Deps maps a module name to its file (relative to the modules directory)
// and its direct dependencies, as modules.dep does.
type Deps struct {
	Path map[string]string   // name -> relative path
	Deps map[string][]string // name -> direct dependency names
}

// ParseDep reads a modules.dep file ("kernel/a.ko: kernel/b.ko kernel/c.ko").
func ParseDep(r io.Reader) (*Deps, error) {
	d := &Deps{Path: map[string]string{}, Deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: missing ':' in %q", line, text)
		}
		name := Name(mod)
		d.Path[name] = strings.TrimSpace(mod)
		var deps []string
		for _, f := range strings.Fields(rest) {
			deps = append(deps, Name(f))
			if _, ok := d.Path[Name(f)]; !ok {
				d.Path[Name(f)] = f
			}
		}
		d.Deps[name] = deps
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	return d, nil
}

// Resolve returns the modules to load for the wanted names, each after its
// dependencies, without duplicates. Wanted names that are not modules (built
// into the kernel, or absent) are returned in missing.
func (d *Deps) Resolve(wanted []string) (order, missing []string, err error) {
	done := map[string]bool{}
	visiting := map[string]bool{}
	var visit func(n string, chain []string) error
	visit = func(n string, chain []string) error {
		if done[n] {
			return nil
		}
		if visiting[n] {
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, n), " -> "))
		}
		if _, ok := d.Path[n]; !ok {
			return fmt.Errorf("module %s needed by %s is not in modules.dep", n, chain[len(chain)-1])
		}
		visiting[n] = true
		for _, dep := range d.Deps[n] {
			if err := visit(dep, append(chain, n)); err != nil {
				return err
			}
		}
		visiting[n] = false
		done[n] = true
		order = append(order, n)
		return nil
	}
	for _, w := range wanted {
		n := Name(w)
		if _, ok := d.Path[n]; !ok {
			missing = append(missing, n)
			continue
		}
		if err := visit(n, nil); err != nil {
			return nil, nil, err
		}
	}
	return order, missing, nil
}

// WriteDep writes modules.dep for the given names (paths relative to the
// modules directory), sorted so the output is reproducible.
func (d *Deps) WriteDep(w io.Writer, names []string) error {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	var b bytes.Buffer
	for _, n := range sorted {
		b.WriteString(d.Path[n])
		b.WriteString(":")
		for _, dep := range d.Deps[n] {
			b.WriteString(" ")
			b.WriteString(d.Path[dep])
		}
		b.WriteString("\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// Load reads dir/modules.dep when it exists (depmod ran), and otherwise
// builds the same table from every module's .modinfo "depends=" field,
// which is what depmod itself reads. Compressed modules are listed but
// only uncompressed ones can be inspected without depmod.
func Load(dir string) (*Deps, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err == nil {
		defer f.Close()
		return ParseDep(f)
	}
	if !os.IsNotExist(err) {
		return nil, err
	}
	d := &Deps{Path: map[string]string{}, Deps: map[string][]string{}}
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() || !strings.Contains(e.Name(), ".ko") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := Name(e.Name())
		if Name(e.Name()) == e.Name() {
			return nil // not a module file (e.g. "*.ko.sig" or other)
		}
		deps, err := ModinfoDepends(p)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		d.Path[name] = rel
		d.Deps[name] = deps
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(d.Path) == 0 {
		return nil, fmt.Errorf("no kernel modules (*.ko) and no modules.dep under %s", dir)
	}
	return d, nil
}

// ModinfoDepends returns the "depends=" list from a module's .modinfo
// section (the module may be compressed).
func ModinfoDepends(path string) ([]string, error) {
	data, err := ReadModule(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	info, err := s.Data()
	if err != nil {
		return nil, err
	}
	return parseModinfoDepends(info), nil
}

func parseModinfoDepends(data []byte) []string {
	var deps []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		v, ok := bytes.CutPrefix(kv, []byte("depends="))
		if !ok {
			continue
		}
		for _, n := range strings.Split(string(v), ",") {
			if n = strings.TrimSpace(n); n != "" {
				deps = append(deps, Name(n))
			}
		}
	}
	return deps
}

// ReadModule returns a module's ELF bytes, decompressing .ko.xz, .ko.zst and
// .ko.gz as distribution kernels may ship them.
func ReadModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".xz"):
		xr, err := xz.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = xr
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(path, ".gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = gr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Builtin returns the modules compiled into the kernel, from
// dir/modules.builtin (shipped with the kernel package). A missing file
// gives an empty set.
func Builtin(dir string) (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if os.IsNotExist(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out[Name(l)] = true
		}
	}
	return out, nil
}
