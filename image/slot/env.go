package slot

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/node/crashpoint"
)

// EnvSize is the size of GRUB's environment block (grubenv); GRUB rewrites
// the block in place, so the file must keep exactly this size.
const EnvSize = 1024

const envHeader = "# GRUB Environment Block\n"

// Env is GRUB's environment block: ordered key=value pairs.
type Env struct {
	keys []string
	vals map[string]string
}

// NewEnv returns an empty environment block.
func NewEnv() *Env { return &Env{vals: map[string]string{}} }

// ParseEnv reads a block in GRUB's format: the header line, "key=value"
// lines with '\' escaping '\' and newline, then '#' padding.
func ParseEnv(b []byte) (*Env, error) {
	if !bytes.HasPrefix(b, []byte(envHeader)) {
		return nil, fmt.Errorf("not a GRUB environment block (missing %q header)", strings.TrimSpace(envHeader))
	}
	e := NewEnv()
	rest := b[len(envHeader):]
	for len(rest) > 0 {
		if rest[0] == '#' {
			// Comment or padding: skip to the end of the line.
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			rest = rest[i+1:]
			continue
		}
		eq := bytes.IndexByte(rest, '=')
		nl := bytes.IndexByte(rest, '\n')
		if eq < 0 || (nl >= 0 && nl < eq) {
			return nil, fmt.Errorf("GRUB environment block: malformed line %q", firstLine(rest))
		}
		name := string(rest[:eq])
		rest = rest[eq+1:]
		var val []byte
		closed := false
		for len(rest) > 0 {
			c := rest[0]
			rest = rest[1:]
			if c == '\\' && len(rest) > 0 {
				val = append(val, rest[0])
				rest = rest[1:]
				continue
			}
			if c == '\n' {
				closed = true
				break
			}
			val = append(val, c)
		}
		if !closed {
			return nil, fmt.Errorf("GRUB environment block: unterminated value of %q", name)
		}
		e.Set(name, string(val))
	}
	return e, nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

// Get returns the value of key ("" when unset).
func (e *Env) Get(key string) string { return e.vals[key] }

// Has reports whether key is set (possibly to "").
func (e *Env) Has(key string) bool { _, ok := e.vals[key]; return ok }

// Keys returns the keys in block order.
func (e *Env) Keys() []string { return append([]string(nil), e.keys...) }

// Set sets key to value, keeping the key's position if it exists.
func (e *Env) Set(key, value string) {
	if _, ok := e.vals[key]; !ok {
		e.keys = append(e.keys, key)
	}
	e.vals[key] = value
}

// Unset removes key.
func (e *Env) Unset(key string) {
	if _, ok := e.vals[key]; !ok {
		return
	}
	delete(e.vals, key)
	for i, k := range e.keys {
		if k == key {
			e.keys = append(e.keys[:i], e.keys[i+1:]...)
			break
		}
	}
}

// Encode renders the block, padded with '#' to EnvSize bytes.
func (e *Env) Encode() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(envHeader)
	for _, k := range e.keys {
		if k == "" || strings.ContainsAny(k, "=\n\\") || k[0] == '#' {
			return nil, fmt.Errorf("GRUB environment: invalid variable name %q", k)
		}
		b.WriteString(k)
		b.WriteByte('=')
		for _, c := range []byte(e.vals[k]) {
			if c == '\\' || c == '\n' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('\n')
	}
	if b.Len() > EnvSize {
		return nil, fmt.Errorf("GRUB environment: %d bytes of variables exceed the %d-byte block", b.Len(), EnvSize)
	}
	b.Write(bytes.Repeat([]byte{'#'}, EnvSize-b.Len()))
	return b.Bytes(), nil
}

// grubenv is kept in two copies, path and path+EnvCopySuffix, so a power
// cut in the middle of a write leaves one whole: each copy is framed by a
// generation number, KeyGen its first variable and KeyGenEnd its last.
// A copy whose two differ, that lacks them or that is not a GRUB block at
// all was torn (or is missing); of the whole copies, the newer counts.
// The writer always rewrites the older (or torn) copy, never the one that
// counts. grub.cfg (image/bootloader) makes the same choice at boot.
// Images from before the copies have one block without generations; it is
// read and written as before.
const (
	KeyGen    = "pith_gen"
	KeyGenEnd = "pith_gen_end"
	// EnvCopySuffix names the second copy: grub/grubenv.1.
	EnvCopySuffix = ".1"
)

// envCopy is one copy as read: gen 0 when it is torn, missing or legacy.
type envCopy struct {
	env *Env
	gen uint64
	err error
}

func readCopy(path string) envCopy {
	b, err := os.ReadFile(path)
	if err != nil {
		return envCopy{err: err}
	}
	e, err := ParseEnv(b)
	if err != nil {
		return envCopy{err: fmt.Errorf("%s: %w", path, err)}
	}
	return envCopy{env: e, gen: Generation(e)}
}

// Generation is the generation of a whole copy, 0 for a torn or legacy
// one. Only the pair's values are compared, not their places: GRUB's
// save_env appends a variable it did not find after KeyGenEnd.
func Generation(e *Env) uint64 {
	if !e.Has(KeyGen) || e.Get(KeyGen) != e.Get(KeyGenEnd) {
		return 0
	}
	g, err := strconv.ParseUint(e.Get(KeyGen), 10, 64)
	if err != nil {
		return 0
	}
	return g
}

// framed returns e's variables between the generation pair.
func framed(e *Env, gen uint64) *Env {
	out := NewEnv()
	out.Set(KeyGen, strconv.FormatUint(gen, 10))
	for _, k := range e.Keys() {
		if k != KeyGen && k != KeyGenEnd {
			out.Set(k, e.Get(k))
		}
	}
	out.Set(KeyGenEnd, strconv.FormatUint(gen, 10))
	return out
}

// ReadEnvFile reads grubenv at path: the newer whole copy of path and
// path+EnvCopySuffix, or a legacy single block as it is. Like grub.cfg,
// with no whole copy it falls back to path's block if that parses.
func ReadEnvFile(path string) (*Env, error) {
	c0, c1 := readCopy(path), readCopy(path+EnvCopySuffix)
	if c1.gen > c0.gen {
		return c1.env, nil
	}
	if c0.err != nil {
		return nil, c0.err
	}
	return c0.env, nil
}

// WriteEnvFile writes e as grubenv at path. With copies, the older (or
// torn, or missing) copy gets e with the next generation, so the copy that
// counts until the write is complete is never touched; a legacy single
// block is rewritten in place.
func WriteEnvFile(path string, e *Env) error {
	c0, c1 := readCopy(path), readCopy(path+EnvCopySuffix)
	if c0.err == nil && c0.gen == 0 && !c0.env.Has(KeyGen) && c1.gen == 0 {
		return writeBlock(path, e)
	}
	target := path
	if c1.gen < c0.gen {
		target = path + EnvCopySuffix
	}
	return writeBlock(target, framed(e, max(c0.gen, c1.gen)+1))
}

// writeBlock writes e to path. An existing 1024-byte block is rewritten in
// place, as GRUB's save_env does, so its sectors never move; otherwise the
// file is created through atomicfile.
func writeBlock(path string, e *Env) error {
	b, err := e.Encode()
	if err != nil {
		return err
	}
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Size() == EnvSize {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if crashpoint.Armed("grubenv-torn") {
			// For VM tests: the block written up to its generation's
			// end mark, the rest as it was, as a torn write leaves it.
			n := bytes.Index(b, []byte(KeyGenEnd+"="))
			if n < 0 {
				n = len(b) / 2
			}
			if _, err := f.WriteAt(b[:n], 0); err == nil {
				f.Sync()
			}
			crashpoint.Reach("grubenv-torn")
		}
		if _, err := f.WriteAt(b, 0); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return atomicfile.WriteFile(path, b, 0o644)
}
