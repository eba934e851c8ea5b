package cloudconfig

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// crossCheck runs the rules that look at more than one value.
func crossCheck(c *Config, rep *Report) {
	paths := map[string]int{}
	for i, f := range c.WriteFiles {
		p := fmt.Sprintf("write_files[%d]", i)
		if prev, dup := paths[f.Path]; dup && f.Path != "" {
			rep.Warnf(c.Pos(p+".path"), p+".path", "%s is also written by write_files[%d]; the later entry wins", f.Path, prev)
		}
		paths[f.Path] = i
		if _, bad := validators["encoding"](f.Encoding); f.Encoding != "" && bad == "" {
			if _, err := DecodeContent(f.Content, f.Encoding); err != nil {
				at := c.Pos(p + ".content")
				if at.Line == 0 {
					at = c.Pos(p + ".encoding")
				}
				rep.Errorf(at, p+".content", "%s.content cannot be decoded as %q: %v", p, f.Encoding, err)
			}
		}
	}

	users := map[string]int{}
	for i, u := range c.Users {
		p := fmt.Sprintf("users[%d]", i)
		if prev, dup := users[u.Name]; dup && u.Name != "" {
			rep.Errorf(c.Pos(p+".name"), p+".name", "user %q is already defined in users[%d]; merge the two entries", u.Name, prev)
		}
		users[u.Name] = i
	}

	for i, u := range c.CoreOS.Units {
		checkUnit(c, rep, fmt.Sprintf("coreos.units[%d]", i), u)
	}

	ls := c.CoreOS.Locksmith
	if (ls.WindowStart == "") != (ls.WindowLength == "") {
		p := "coreos.locksmith.window_start"
		if ls.WindowStart == "" {
			p = "coreos.locksmith.window_length"
		}
		rep.Errorf(c.Pos(p), p, "coreos.locksmith: window_start and window_length must be set together")
	}
	pu := c.Pith.Update
	if (pu.WindowStart == "") != (pu.WindowLength == "") {
		p := "pith.update.window_start"
		if pu.WindowStart == "" {
			p = "pith.update.window_length"
		}
		rep.Errorf(c.Pos(p), p, "pith.update: window_start and window_length must be set together")
	}

	e2 := c.CoreOS.Etcd2
	if e2.Discovery != "" && e2.InitialCluster != "" {
		rep.Errorf(c.Pos("coreos.etcd2.discovery"), "coreos.etcd2.discovery", "coreos.etcd2: set either discovery or initial_cluster, not both")
	}
	pc := c.Pith.Cluster
	if pc.Discovery != "" && len(pc.Peers) > 0 {
		rep.Errorf(c.Pos("pith.cluster.discovery"), "pith.cluster.discovery", "pith.cluster: set either discovery or peers, not both")
	}
	if k := c.Pith.KV; k.ClientPort != 0 && k.ClientPort == k.PeerPort {
		rep.Errorf(c.Pos("pith.kv.peer_port"), "pith.kv.peer_port", "pith.kv: client_port and peer_port must differ")
	}
	checkTLS(c, rep)
	checkSecretFiles(c, rep)
	checkUnhonoured(c, rep)
}

var startCommands = map[string]bool{"start": true, "restart": true, "reload": true, "try-restart": true, "reload-or-restart": true, "reload-or-try-restart": true}

func checkUnit(c *Config, rep *Report, p string, u Unit) {
	at := c.Pos(p)
	if u.Name == "" {
		return // reported as missing
	}
	if IsNetworkUnit(u.Name) {
		checkNetworkUnit(c, rep, p, u)
		return
	}
	template := strings.Contains(u.Name, "@.")
	if template && u.Command != "" {
		rep.Errorf(c.Pos(p+".command"), p+".command", "%s is a template; a command needs an instance name such as %s", u.Name, strings.Replace(u.Name, "@.", "@1.", 1))
	}
	if u.Mask && startCommands[u.Command] {
		rep.Errorf(c.Pos(p+".command"), p+".command", "%s is masked and cannot be started; drop mask or the command", u.Name)
	}
	if u.Mask && u.Enable {
		rep.Errorf(c.Pos(p+".enable"), p+".enable", "%s cannot be both masked and enabled", u.Name)
	}
	if u.Mask && u.Content != "" {
		rep.Warnf(c.Pos(p+".content"), p+".content", "%s is masked; its content is written but systemd ignores it", u.Name)
	}
	if u.Content == "" && u.Command == "" && !u.Enable && !u.Mask && len(u.DropIns) == 0 {
		rep.Warnf(at, p, "%s has no content, command, enable, mask or drop-ins: it does nothing", u.Name)
	}
	if u.Content != "" {
		checkUnitContent(c, rep, p+".content", u.Content)
	}
	names := map[string]bool{}
	for j, d := range u.DropIns {
		dp := fmt.Sprintf("%s.drop_ins[%d]", p, j)
		if names[d.Name] && d.Name != "" {
			rep.Warnf(c.Pos(dp+".name"), dp+".name", "drop-in %s is listed twice for %s; the later one wins", d.Name, u.Name)
		}
		names[d.Name] = true
		if d.Content == "" {
			rep.Warnf(c.Pos(dp), dp, "drop-in %s has no content", d.Name)
		} else {
			checkUnitContent(c, rep, dp+".content", d.Content)
		}
	}
}

// checkNetworkUnit: networkd reads its files itself and is restarted
// after they are written, so commands, enable and mask mean nothing for
// them (coreos-cloudinit ignored them too); names must be plain files.
func checkNetworkUnit(c *Config, rep *Report, p string, u Unit) {
	if strings.Contains(u.Name, "@") {
		rep.Errorf(c.Pos(p+".name"), p+".name", "%s: networkd files cannot be templates; drop the '@'", u.Name)
	}
	if u.Command != "" {
		rep.Warnf(c.Pos(p+".command"), p+".command", "%s is a networkd file: the command is ignored (systemd-networkd is restarted when its files change)", u.Name)
	}
	if u.Enable {
		rep.Warnf(c.Pos(p+".enable"), p+".enable", "%s is a networkd file: enable is ignored (networkd reads every file in /etc/systemd/network)", u.Name)
	}
	if u.Mask {
		rep.Errorf(c.Pos(p+".mask"), p+".mask", "%s is a networkd file and cannot be masked; to disable a shipped one, override it with a file of the same name (content: \"# disabled\")", u.Name)
	}
	if u.Content == "" && len(u.DropIns) == 0 {
		rep.Warnf(c.Pos(p), p, "%s has no content or drop-ins: it does nothing", u.Name)
	}
	if u.Content != "" {
		checkUnitContent(c, rep, p+".content", u.Content)
		if strings.HasSuffix(u.Name, ".network") && !strings.Contains(u.Content, "[Match]") {
			rep.Warnf(c.Pos(p+".content"), p+".content", "%s has no [Match] section: networkd applies it to every interface", u.Name)
		}
	}
	for j, d := range u.DropIns {
		dp := fmt.Sprintf("%s.drop_ins[%d]", p, j)
		if d.Content != "" {
			checkUnitContent(c, rep, dp+".content", d.Content)
		}
	}
}

// checkUnitContent parses unit text the way systemd's loader would read
// sections and keys, so a stray line is caught before boot.
func checkUnitContent(c *Config, rep *Report, p, content string) {
	if _, err := unit.DeserializeOptions(strings.NewReader(content)); err != nil {
		rep.Errorf(c.Pos(p), p, "%s is not a valid systemd unit file: %v", p, err)
		return
	}
	if !strings.Contains(content, "[") {
		rep.Warnf(c.Pos(p), p, "%s has no [Section] header; systemd will ignore its settings", p)
	}
}

// DecodeContent returns a write_files entry's bytes, undoing its encoding
// ("", b64, base64, gz, gzip, or gz+b64 and its spellings).
func DecodeContent(content, encoding string) ([]byte, error) {
	var b64, gz bool
	switch encoding {
	case "":
		return []byte(content), nil
	case "b64", "base64":
		b64 = true
	case "gz", "gzip":
		gz = true
	case "gz+b64", "gz+base64", "gzip+b64", "gzip+base64":
		b64, gz = true, true
	default:
		return nil, fmt.Errorf("unsupported encoding %q", encoding)
	}
	data := []byte(content)
	if b64 {
		// Base64 in YAML is often wrapped over several lines.
		clean := strings.Map(func(r rune) rune {
			if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, content)
		d, err := base64.StdEncoding.DecodeString(clean)
		if err != nil {
			return nil, fmt.Errorf("not valid base64: %v", err)
		}
		data = d
	}
	if gz {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("not valid gzip: %v", err)
		}
		d, err := io.ReadAll(io.LimitReader(zr, MaxSize+1))
		if err != nil {
			return nil, fmt.Errorf("gzip data does not decompress: %v", err)
		}
		if len(d) > MaxSize {
			return nil, fmt.Errorf("decompressed content exceeds %d MiB", MaxSize>>20)
		}
		data = d
	}
	return data, nil
}
