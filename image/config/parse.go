package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a problem in a config file, at a line. Its text is one line:
// "file:line: key: problem: fix".
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// field describes one key of the file: how to read its node into the Config
// and how to check the value.
type field struct {
	set func(c *Config, n *yaml.Node) error // reads the node (type errors)
	chk func(c *Config) error               // checks the value (value errors)
}

type section map[string]any // values: field or section

var schema = section{
	"version":  field{setString(func(c *Config) *string { return &c.Version }), func(c *Config) error { return checkVersion(c.Version) }},
	"platform": field{setString(func(c *Config) *string { return &c.Platform }), func(c *Config) error { return checkEnum(c.Platform, Platforms, "platform") }},
	"arch":     field{setString(func(c *Config) *string { return &c.Arch }), func(c *Config) error { return checkEnum(c.Arch, Arches, "machine architecture") }},
	"debian": section{
		"suite":           field{setString(func(c *Config) *string { return &c.Suite }), func(c *Config) error { return checkSuite(c.Suite) }},
		"mirror":          field{setString(func(c *Config) *string { return &c.Mirror }), func(c *Config) error { return checkMirror(c.Mirror) }},
		"suites":          field{setList(func(c *Config) *[]string { return &c.Suites }, "[bookworm, bookworm-updates, bookworm-security]"), func(c *Config) error { return checkSuiteNames(c.Suites) }},
		"security_mirror": field{setString(func(c *Config) *string { return &c.SecurityMirror }), func(c *Config) error { return checkMirror(c.SecurityMirror) }},
		"packages":        field{setList(func(c *Config) *[]string { return &c.Packages }, "[htop, vim]"), func(c *Config) error { return checkPackages(c.Packages) }},
		"kernel":          field{setString(func(c *Config) *string { return &c.KernelPackage }), func(c *Config) error { return checkPackage(c.KernelPackage) }},
	},
	"disk": section{
		"size": field{setSize, func(c *Config) error { return checkDiskSize(c.DiskSize) }},
	},
	"formats":           field{setList(func(c *Config) *[]string { return &c.Formats }, "[raw, qcow2]"), func(c *Config) error { return checkFormats(c.Formats) }},
	"source_date_epoch": field{setEpoch, func(c *Config) error { return checkEpoch(c.Epoch) }},
	"release_keys":      field{setList(func(c *Config) *[]string { return &c.ReleaseKeys }, "[keys/pith-release.pub]"), func(c *Config) error { return checkReleaseKeys(c.ReleaseKeys) }},
}

// Parse reads YAML config data on top of the defaults and validates it.
// name is the file name used in error messages. SOURCE_DATE_EPOCH is not
// applied here (Load does).
func Parse(data []byte, name string) (Config, error) {
	c := builtin()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil // empty file: all defaults
		}
		return Config{}, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return Config{}, &Error{name, extra.Line, "a second YAML document: a config is one document; remove the '---' and what follows"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return c, nil // only comments
	}
	if err := walk(&c, root, schema, "", name); err != nil {
		return Config{}, err
	}
	// The default kernel follows the architecture unless the file names one.
	if c.KernelPackage == DefaultKernelPackage {
		c.KernelPackage = DefaultKernelFor(c.Arch)
	}
	// debian.suites depends on debian.suite, which may come after it.
	if err := checkSuites(c.Suite, c.Suites); err != nil {
		return Config{}, &Error{name, 0, "debian.suites: " + err.Error()}
	}
	return c, nil
}

// yamlError makes yaml.v3's syntax errors ("yaml: line 3: ...") one line in
// our format.
func yamlError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	msg = strings.ReplaceAll(msg, "\n", " ")
	return &Error{name, line, "not valid YAML (" + msg + "): fix the syntax (spaces, not tabs, for indentation)"}
}

func walk(c *Config, n *yaml.Node, sec section, prefix, name string) error {
	if n.Kind != yaml.MappingNode {
		what := "the file"
		if prefix != "" {
			what = strings.TrimSuffix(prefix, ".")
		}
		return &Error{name, n.Line, fmt.Sprintf("%s: expected a mapping of keys (%s), got %s", what, strings.Join(keys(sec), ", "), kindName(n))}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			return &Error{name, k.Line, fmt.Sprintf("key %q is already set at line %d: keep one", prefix+k.Value, first)}
		}
		seen[k.Value] = k.Line
		spec, ok := sec[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", prefix+k.Value)
			if s := suggest(k.Value, keys(sec)); s != "" {
				msg += fmt.Sprintf(": did you mean %q?", prefix+s)
			} else {
				msg += fmt.Sprintf(": remove it (keys here: %s)", strings.Join(keys(sec), ", "))
			}
			return &Error{name, k.Line, msg}
		}
		switch s := spec.(type) {
		case section:
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue // "debian:" with nothing under it
			}
			if err := walk(c, v, s, prefix+k.Value+".", name); err != nil {
				return err
			}
		case field:
			if err := s.set(c, v); err != nil {
				line := v.Line
				var le *lineError
				if errors.As(err, &le) {
					line, err = le.line, le.err
				}
				return &Error{name, line, fmt.Sprintf("%s: %v", prefix+k.Value, err)}
			}
			if err := s.chk(c); err != nil {
				line := v.Line
				var ie *itemError
				if errors.As(err, &ie) && v.Kind == yaml.SequenceNode && ie.index < len(v.Content) {
					line = v.Content[ie.index].Line
				}
				return &Error{name, line, fmt.Sprintf("%s: %v", prefix+k.Value, err)}
			}
		}
	}
	return nil
}

// lineError points a type error at a list item rather than the list.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return e.err.Error() }

func keys(sec section) []string {
	var ks []string
	for k := range sec {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}

// scalar returns the text of a plain value. Numbers are accepted as text
// (version: 1.0) but their source text is kept, not a float's rendering.
func scalar(n *yaml.Node, example string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", fmt.Errorf("expected a value, got %s: use e.g. %s", kindName(n), example)
	}
	return n.Value, nil
}

func setString(ptr func(*Config) *string) func(*Config, *yaml.Node) error {
	return func(c *Config, n *yaml.Node) error {
		s, err := scalar(n, "a word or quoted string")
		if err != nil {
			return err
		}
		*ptr(c) = s
		return nil
	}
}

func setList(ptr func(*Config) *[]string, example string) func(*Config, *yaml.Node) error {
	return func(c *Config, n *yaml.Node) error {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			*ptr(c) = nil
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("expected a list, got %s: use e.g. %s", kindName(n), example)
		}
		var out []string
		for _, item := range n.Content {
			s, err := scalar(item, example)
			if err != nil {
				return &lineError{item.Line, err}
			}
			out = append(out, s)
		}
		if len(out) == 0 {
			out = nil // "[]" and no key mean the same
		}
		*ptr(c) = out
		return nil
	}
}

func setSize(c *Config, n *yaml.Node) error {
	s, err := scalar(n, "4GiB")
	if err != nil {
		return err
	}
	size, err := ParseSize(s)
	if err != nil {
		return err
	}
	c.DiskSize = size
	return nil
}

func setEpoch(c *Config, n *yaml.Node) error {
	s, err := scalar(n, fmt.Sprint(DefaultEpoch))
	if err != nil {
		return err
	}
	e, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n.Tag != "!!int" {
		return fmt.Errorf("%q is not a Unix time: use seconds since 1970, e.g. %d", s, DefaultEpoch)
	}
	c.Epoch = e
	return nil
}

// suggest returns the known key closest to k if it is a likely typo.
func suggest(k string, known []string) string {
	best, bestD := "", 3
	for _, cand := range known {
		if d := editDistance(strings.ToLower(strings.ReplaceAll(k, "-", "_")), cand); d < bestD {
			best, bestD = cand, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
