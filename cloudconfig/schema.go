package cloudconfig

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// field is one key of a struct in types.go, read from its tags once.
type field struct {
	key        string
	index      int
	valid      string
	required   bool
	deprecated string
	ignored    string
}

var fieldCache sync.Map // reflect.Type -> []field

func fieldsOf(t reflect.Type) []field {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]field)
	}
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := sf.Tag.Get("yaml")
		if key == "" || key == "-" || !sf.IsExported() {
			continue
		}
		out = append(out, field{
			key:        key,
			index:      i,
			valid:      sf.Tag.Get("valid"),
			required:   sf.Tag.Get("required") == "true",
			deprecated: sf.Tag.Get("deprecated"),
			ignored:    sf.Tag.Get("ignored"),
		})
	}
	fieldCache.Store(t, out)
	return out
}

// normalizeKey matches keys the way coreos-cloudinit did: dashes and
// underscores are the same.
func normalizeKey(k string) string {
	if strings.IndexByte(k, '-') < 0 {
		return k
	}
	return strings.ReplaceAll(k, "-", "_")
}

// nodeBudget bounds the work an alias-heavy ("billion laughs") document can
// cause: every visited node counts, aliases included. A document without
// aliases has fewer nodes than bytes, so only alias expansion can exceed it.
func nodeBudget(size int) int { return size + 100000 }

// walker decodes a yaml.Node tree into the structs of types.go, recording
// every problem in the report instead of stopping at the first.
type walker struct {
	rep     *Report
	pos     map[string]Pos
	visited int
	budgetN int
	aborted bool
}

func posOf(n *yaml.Node) Pos { return Pos{Line: n.Line, Column: n.Column} }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int":
			return "a number"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		}
		return "a string"
	}
	return "an unknown node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// deref follows aliases, counting the work.
func (w *walker) deref(n *yaml.Node) *yaml.Node {
	for depth := 0; n != nil && n.Kind == yaml.AliasNode; depth++ {
		if depth > 100 {
			return nil
		}
		n = n.Alias
	}
	return n
}

func (w *walker) budget(n *yaml.Node) bool {
	if w.aborted {
		return false
	}
	w.visited++
	if w.visited > w.budgetN {
		w.aborted = true
		w.rep.Errorf(posOf(n), "", "aliases expand the document to more than %d YAML nodes (alias bomb?); use fewer aliases", w.budgetN)
		return false
	}
	return true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// decode fills v from n. path names the value in messages; rule is the
// value check from the field's valid tag.
func (w *walker) decode(n *yaml.Node, v reflect.Value, path, rule string) {
	n = w.deref(n)
	if n == nil || !w.budget(n) {
		return
	}
	w.pos[path] = posOf(n)
	if isNull(n) {
		// An empty key ("coreos:" with nothing under it) is the zero value,
		// as in coreos-cloudinit; but an empty list item ("- " alone) still
		// lacks its required keys.
		if v.Kind() == reflect.Struct {
			for _, f := range fieldsOf(v.Type()) {
				if f.required {
					w.rep.Errorf(posOf(n), path, "%s: empty item: missing required key %q", path, f.key)
				}
			}
		}
		return
	}
	if v.Type() == reflect.TypeOf(Sudo{}) {
		w.decodeSudo(n, v.Addr().Interface().(*Sudo), path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		w.decode(n, nv.Elem(), path, rule)
		v.Set(nv)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.rep.Errorf(posOf(n), path, "%s: wrong type: got %s, want a mapping of keys", path, kindName(n))
			return
		}
		w.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.rep.Errorf(posOf(n), path, "%s: wrong type: got %s, want a list (items start with \"- \")", path, kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			w.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i), rule)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.rep.Errorf(posOf(n), path, "%s: wrong type: got %s, want a mapping", path, kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := w.deref(n.Content[i]), n.Content[i+1]
			if k == nil || k.Kind != yaml.ScalarNode {
				w.rep.Errorf(posOf(n.Content[i]), path, "%s: keys must be strings", path)
				continue
			}
			kp := join(path, k.Value)
			if rule != "" {
				w.check(k, k.Value, kp, rule)
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			w.decode(val, ev, kp, "")
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.rep.Errorf(posOf(n), path, "%s: wrong type: got %s, want a string", path, kindName(n))
			return
		}
		// The raw text, not YAML's reading of it: `permissions: 0644`
		// stays "0644" and `reboot-strategy: off` stays "off".
		v.SetString(n.Value)
		w.check(n, n.Value, path, rule)
	case reflect.Bool:
		b, ok := parseBool(n)
		if !ok {
			w.rep.Errorf(posOf(n), path, "%s: wrong type: got %s %q, want true or false", path, kindName(n), short(n.Value))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			w.rep.Errorf(posOf(n), path, "%s: wrong type: got %s, want a whole number", path, kindName(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil {
			w.rep.Errorf(posOf(n), path, "%s: wrong type: got %q, want a whole number", path, short(n.Value))
			return
		}
		v.SetInt(i)
		w.check(n, n.Value, path, rule)
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			w.rep.Errorf(posOf(n), path, "%s: wrong type: got %s, want a number", path, kindName(n))
			return
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			w.rep.Errorf(posOf(n), path, "%s: wrong type: got %q, want a number", path, short(n.Value))
			return
		}
		v.SetFloat(f)
		w.check(n, n.Value, path, rule)
	default:
		panic("cloudconfig: unhandled kind " + v.Kind().String())
	}
}

func (w *walker) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	fields := fieldsOf(v.Type())
	// A mapping has few keys: a slice is cheaper than a map here.
	type seenKey struct {
		key string
		pos Pos
	}
	seen := make([]seenKey, 0, len(n.Content)/2)
	lookup := func(k string) (Pos, bool) {
		for _, s := range seen {
			if s.key == k {
				return s.pos, true
			}
		}
		return Pos{}, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, val := w.deref(n.Content[i]), n.Content[i+1]
		if kn == nil || kn.Kind != yaml.ScalarNode {
			w.rep.Errorf(posOf(n.Content[i]), path, "%s: keys must be plain strings", orTop(path))
			continue
		}
		key := normalizeKey(kn.Value)
		kp := join(path, key)
		if prev, dup := lookup(key); dup {
			w.rep.Errorf(posOf(kn), kp, "duplicate key %q (first set on line %d); keep one", kn.Value, prev.Line)
			continue
		}
		seen = append(seen, seenKey{key, posOf(kn)})
		var f *field
		for j := range fields {
			if fields[j].key == key {
				f = &fields[j]
				break
			}
		}
		if f == nil {
			w.unknownKey(kn, path, key, fields)
			continue
		}
		if f.deprecated != "" {
			w.rep.Warnf(posOf(kn), kp, "%s is deprecated and ignored: %s", kp, f.deprecated)
		}
		if f.ignored != "" {
			w.rep.Warnf(posOf(kn), kp, "%s is accepted for compatibility but ignored: %s", kp, f.ignored)
		}
		w.decode(val, v.Field(f.index), kp, f.valid)
		if f.required && v.Field(f.index).IsZero() {
			if vn := w.deref(val); vn != nil {
				w.rep.Errorf(posOf(vn), kp, "%s must not be empty", kp)
			}
		}
	}
	for _, f := range fields {
		if _, ok := lookup(f.key); f.required && !ok {
			w.rep.Errorf(posOf(n), path, "%s: missing required key %q", path, f.key)
		}
	}
}

// cloudInitOnly are cloud-init keys the CoreOS dialect never had; naming
// them helps people who bring an Ubuntu config.
var cloudInitOnly = map[string]bool{
	"runcmd": true, "bootcmd": true, "packages": true, "package_update": true,
	"package_upgrade": true, "apt": true, "yum_repos": true, "mounts": true,
	"chpasswd": true, "ntp": true, "timezone": true, "locale": true,
	"final_message": true, "power_state": true, "disk_setup": true,
	"fs_setup": true, "growpart": true, "resize_rootfs": true, "ssh_pwauth": true,
	"ssh_keys": true, "disable_root": true, "groups": true, "preserve_hostname": true,
	"fqdn": true, "ca_certs": true, "rsyslog": true, "snap": true, "phone_home": true,
}

func (w *walker) unknownKey(kn *yaml.Node, path, key string, fields []field) {
	kp := join(path, key)
	switch {
	case path == "coreos" && key == "write_files":
		w.rep.Warnf(posOf(kn), kp, "write_files belongs at the top level, not under coreos; it is ignored here")
		return
	case path == "" && cloudInitOnly[key]:
		w.rep.Warnf(posOf(kn), kp, "unknown key %q: a cloud-init key the CoreOS dialect does not support; it is ignored", kn.Value)
		return
	}
	best, bestD := "", 3
	for _, f := range fields {
		if d := editDistance(key, f.key); d < bestD {
			best, bestD = f.key, d
		}
	}
	if best != "" {
		w.rep.Warnf(posOf(kn), kp, "unknown key %q in %s (did you mean %q?); it is ignored", kn.Value, orTop(path), best)
		return
	}
	w.rep.Warnf(posOf(kn), kp, "unknown key %q in %s; it is ignored", kn.Value, orTop(path))
}

func orTop(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

func (w *walker) decodeSudo(n *yaml.Node, s *Sudo, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if b, ok := parseBool(n); ok {
			if b {
				w.rep.Errorf(posOf(n), path, "%s: true is not a sudo rule; write a rule such as \"ALL=(ALL) NOPASSWD:ALL\"", path)
			}
			return
		}
		w.check(n, n.Value, path, "sudorule")
		s.Rules = []string{n.Value}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			c = w.deref(c)
			if c == nil || !w.budget(c) {
				continue
			}
			p := fmt.Sprintf("%s[%d]", path, i)
			w.pos[p] = posOf(c)
			if c.Kind != yaml.ScalarNode {
				w.rep.Errorf(posOf(c), p, "%s: wrong type: got %s, want a sudo rule string", p, kindName(c))
				continue
			}
			w.check(c, c.Value, p, "sudorule")
			s.Rules = append(s.Rules, c.Value)
		}
	default:
		w.rep.Errorf(posOf(n), path, "%s: wrong type: got %s, want a sudo rule, a list of rules, or false", path, kindName(n))
	}
}

// parseBool accepts YAML 1.2 booleans and the YAML 1.1 words
// (yes/no/on/off) that CoreOS-era configs used, e.g. `enable: yes`.
func parseBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode {
		return false, false
	}
	switch strings.ToLower(n.Value) {
	case "true", "yes", "y", "on":
		return true, true
	case "false", "no", "n", "off":
		return false, true
	}
	return false, false
}

func (w *walker) check(n *yaml.Node, value, path, rule string) {
	if rule == "" || value == "" {
		return
	}
	fn, ok := validators[rule]
	if !ok {
		panic("cloudconfig: unknown validator " + rule)
	}
	if msg, sev := fn(value); msg != "" {
		w.rep.add(sev, posOf(n), path, "%s: %s", path, msg)
	}
}

func short(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// editDistance is Levenshtein distance, used only to suggest key names.
func editDistance(a, b string) int {
	if len(a) > 40 || len(b) > 40 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
