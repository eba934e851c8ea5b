package cloudconfig

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// MaxSize is the largest user-data accepted, before and after gzip
// decompression. EC2 allows 16 KiB; config drives and fw_cfg allow more,
// and write_files can carry whole files, so the limit is generous but
// keeps a hostile document from exhausting a small node's memory.
const MaxSize = 32 << 20

// Format is the kind of user-data, detected from its content.
type Format int

const (
	// FormatEmpty is user-data with nothing in it: valid, nothing to do.
	FormatEmpty Format = iota
	// FormatCloudConfig starts with the line "#cloud-config".
	FormatCloudConfig
	// FormatScript starts with "#!" and is run once on first boot.
	FormatScript
	// FormatIgnition is an Ignition v3 JSON config.
	FormatIgnition
	// FormatUnknown is anything else; it is rejected.
	FormatUnknown
)

func (f Format) String() string {
	return [...]string{"empty", "cloud-config", "script", "ignition", "unknown"}[f]
}

// MarshalText lets JSON reports name the format.
func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText reads a format name written by MarshalText.
func (f *Format) UnmarshalText(b []byte) error {
	for g := FormatEmpty; g <= FormatUnknown; g++ {
		if g.String() == string(b) {
			*f = g
			return nil
		}
	}
	return fmt.Errorf("unknown user-data format %q", b)
}

var gzipMagic = []byte{0x1f, 0x8b}

// Detect names the kind of user-data from its first bytes. Gzipped
// user-data (EC2's way round its size limit) must be decompressed with
// Decompress first.
func Detect(data []byte) Format {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if len(bytes.TrimSpace(data)) == 0 {
		return FormatEmpty
	}
	first, _, _ := bytes.Cut(data, []byte("\n"))
	first = bytes.TrimRight(first, " \t\r")
	switch {
	case string(first) == "#cloud-config":
		return FormatCloudConfig
	case bytes.HasPrefix(data, []byte("#!")):
		return FormatScript
	case bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")):
		return FormatIgnition
	}
	return FormatUnknown
}

// Decompress returns data unchanged unless it is gzip-compressed, in which
// case it returns the decompressed bytes, refusing more than MaxSize.
func Decompress(data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, gzipMagic) {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("user-data looks gzip-compressed but is not valid gzip: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("user-data looks gzip-compressed but does not decompress: %w", err)
	}
	if len(out) > MaxSize {
		return nil, fmt.Errorf("decompressed user-data is larger than %d MiB; keep it under the limit", MaxSize>>20)
	}
	return out, nil
}

// UserData is parsed user-data of any format.
type UserData struct {
	Format      Format
	CloudConfig *Config         // FormatCloudConfig
	Script      []byte          // FormatScript
	Ignition    *IgnitionConfig // FormatIgnition
}

// Parse detects the format of data, parses and validates it. The returned
// report lists every problem; when it has errors the UserData must not be
// applied (it may be partly filled).
func Parse(data []byte) (*UserData, *Report) {
	rep := &Report{}
	if len(data) > MaxSize {
		rep.Errorf(Pos{Line: 1}, "", "user-data is %d bytes; the limit is %d MiB (move large files to a URL or image)", len(data), MaxSize>>20)
		return &UserData{Format: FormatUnknown}, rep
	}
	d, err := Decompress(data)
	if err != nil {
		rep.Errorf(Pos{Line: 1}, "", "%v", err)
		return &UserData{Format: FormatUnknown}, rep
	}
	ud := &UserData{Format: Detect(d)}
	switch ud.Format {
	case FormatEmpty:
	case FormatCloudConfig:
		ud.CloudConfig, rep = ParseCloudConfig(d)
	case FormatScript:
		checkText(d, rep)
		ud.Script = d
	case FormatIgnition:
		ud.Ignition, rep = ParseIgnition(d)
	default:
		unknownFormat(d, rep)
	}
	rep.sort()
	return ud, rep
}

// Validate is Parse without the result.
func Validate(data []byte) *Report {
	_, rep := Parse(data)
	return rep
}

func unknownFormat(d []byte, rep *Report) {
	switch {
	case !utf8.Valid(d) || bytes.IndexByte(d, 0) >= 0:
		rep.Errorf(Pos{Line: 1, Column: 1}, "", "user-data is binary, not text: want a #cloud-config YAML file, a #! script or an Ignition JSON config")
	case bytes.HasPrefix(d, []byte("Content-Type: multipart/")) || bytes.HasPrefix(d, []byte("MIME-Version:")):
		rep.Errorf(Pos{Line: 1, Column: 1}, "", "MIME multipart user-data is not supported: send a single #cloud-config, #! script or Ignition config")
	case bytes.HasPrefix(bytes.TrimSpace(d), []byte("#cloud-config")):
		rep.Errorf(Pos{Line: 1, Column: 1}, "", "the first line must be exactly \"#cloud-config\" (found %q)", short(firstLine(d)))
	default:
		rep.Errorf(Pos{Line: 1, Column: 1}, "", "unrecognised user-data: the first line must be \"#cloud-config\" or start with \"#!\", or the file must be an Ignition JSON config")
	}
}

func firstLine(d []byte) string {
	l, _, _ := bytes.Cut(d, []byte("\n"))
	return strings.TrimRight(string(l), "\r")
}

func checkText(d []byte, rep *Report) {
	if !utf8.Valid(d) || bytes.IndexByte(d, 0) >= 0 {
		rep.Errorf(Pos{Line: 1, Column: 1}, "", "script contains binary data (NUL bytes or invalid UTF-8); user-data scripts must be text")
	}
	interp := strings.Fields(strings.TrimPrefix(firstLine(d), "#!"))
	if len(interp) == 0 || !strings.HasPrefix(interp[0], "/") {
		rep.Errorf(Pos{Line: 1, Column: 3}, "", "the #! line must name an interpreter by absolute path, e.g. #!/bin/bash")
	}
}

var reYAMLLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// ParseCloudConfig parses and validates a #cloud-config document.
func ParseCloudConfig(data []byte) (*Config, *Report) {
	rep := &Report{}
	// About one value per 16 bytes of YAML; sizing the map up front
	// saves rehashing. Capped: a document that is mostly one big
	// write_files block would otherwise reserve ~80 MiB for nothing.
	cfg := &Config{pos: make(map[string]Pos, min(len(data)/16, 1<<16))}
	if first := firstLine(data); strings.TrimRight(first, " \t") != first {
		rep.Warnf(Pos{Line: 1, Column: len("#cloud-config") + 1}, "", "trailing whitespace after \"#cloud-config\"; coreos-cloudinit would not recognise this file")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return cfg, rep // only comments: an empty config
		}
		// Tabs are legal inside block scalars (unit files), so they are
		// only named once the document fails to parse.
		yamlError(err, checkTabs(data, rep), rep)
		rep.sort()
		return cfg, rep
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		rep.Warnf(posOf(&extra), "", "only the first YAML document is used; remove the \"---\" separator and what follows, or merge it")
	} else if !errors.Is(err, io.EOF) {
		yamlError(err, checkTabs(data, rep), rep)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		return cfg, rep
	}
	if root.Kind != yaml.MappingNode {
		rep.Errorf(posOf(root), "", "a cloud-config must be a YAML mapping of keys (hostname:, users:, coreos: ...), got %s", kindName(root))
		return cfg, rep
	}
	w := &walker{rep: rep, pos: cfg.pos, budgetN: nodeBudget(len(data))}
	w.decodeStruct(root, reflect.ValueOf(cfg).Elem(), "")
	if !w.aborted {
		crossCheck(cfg, rep)
	}
	rep.sort()
	return cfg, rep
}

// checkTabs reports tabs used for indentation (YAML forbids them) on every
// line, so the operator sees all of them, not only the first the parser
// trips on. It returns the lines reported.
func checkTabs(data []byte, rep *Report) map[int]bool {
	lines := map[int]bool{}
	line := 1
	for len(data) > 0 {
		l, rest, _ := bytes.Cut(data, []byte("\n"))
		for i, c := range l {
			if c == ' ' {
				continue
			}
			if c == '\t' {
				rep.Errorf(Pos{Line: line, Column: i + 1}, "", "tab character in indentation; YAML indents with spaces only")
				lines[line] = true
			}
			break
		}
		data = rest
		line++
	}
	return lines
}

func yamlError(err error, tabs map[int]bool, rep *Report) {
	msg := err.Error()
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l == "yaml: unmarshal errors:" {
			continue
		}
		if m := reYAMLLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			if tabs[n] {
				continue // already reported as a tab with its column
			}
			rep.Errorf(Pos{Line: n}, "", "YAML syntax error: %s", m[2])
			continue
		}
		if len(tabs) > 0 && strings.Contains(l, "found character that cannot start any token") {
			continue
		}
		rep.Errorf(Pos{Line: 1}, "", "YAML syntax error: %s", strings.TrimPrefix(l, "yaml: "))
	}
}
