package slot

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// ReadEnvFile reads a grubenv file.
func ReadEnvFile(path string) (*Env, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	e, err := ParseEnv(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// WriteEnvFile writes e to path. An existing 1024-byte block is rewritten in
// place, as GRUB's save_env does, so its sectors never move; otherwise the
// file is created through a temporary name and a rename.
func WriteEnvFile(path string, e *Env) error {
	b, err := e.Encode()
	if err != nil {
		return err
	}
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Size() == EnvSize {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
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
	tmp, err := os.CreateTemp(filepath.Dir(path), ".grubenv-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
