package cloudconfig

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	ignerrors "github.com/coreos/ignition/v2/config/shared/errors"
	"github.com/coreos/ignition/v2/config/v3_5"
	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
	vjson "github.com/coreos/vcontext/json"
	vpath "github.com/coreos/vcontext/path"
	vreport "github.com/coreos/vcontext/report"
)

// IgnitionConfig is an Ignition config translated to spec 3.5, whatever
// 3.x version it was written in.
type IgnitionConfig = igntypes.Config

// ParseIgnition parses and validates an Ignition v3 config (spec 3.0 to
// 3.5) with Ignition's own packages, and adds Pith's limits: the initramfs
// applies storage.disks and storage.filesystems on first boot, pithd the
// files, directories, links, users, groups and systemd units (remote
// sources fetched and hash-checked before the first write); kernel
// arguments are applied by the initramfs too (ignkargs.go); RAID and LUKS
// are errors.
func ParseIgnition(data []byte) (*IgnitionConfig, *Report) {
	rep := &Report{}
	cfg, irep, err := v3_5.ParseCompatibleVersion(data)
	addIgnitionReport(irep, rep, "Ignition")
	if errors.Is(err, ignerrors.ErrInvalid) && json.Valid(data) {
		// Ignition stops at its own validation errors; read what it could
		// so Pith's checks below still report everything at once.
		var partial IgnitionConfig
		if json.Unmarshal(data, &partial) == nil {
			pithIgnitionLimits(&partial, data, rep)
		}
	}
	if err != nil {
		if !rep.HasErrors() {
			msg := err.Error()
			switch {
			case errors.Is(err, ignerrors.ErrUnknownVersion):
				msg = "unsupported Ignition config version: Pith accepts spec 3.0.0 to 3.5.0 (set ignition.version)"
			case errors.Is(err, ignerrors.ErrInvalidVersion):
				msg = "ignition.version is missing or not a version; set it, e.g. \"3.4.0\""
			}
			rep.Errorf(Pos{Line: 1, Column: 1}, "ignition.version", "Ignition: %s", msg)
		}
		return nil, rep
	}
	pithIgnitionLimits(&cfg, data, rep)
	return &cfg, rep
}

func addIgnitionReport(irep vreport.Report, rep *Report, who string) {
	for _, e := range irep.Entries {
		line, col := e.Marker.Start()
		pos := Pos{Line: int(line), Column: int(col)}
		// encoding/json's SyntaxError offset counts the offending byte, so
		// Ignition's marker lands one column past it.
		if strings.HasPrefix(e.Message, "invalid character") && pos.Column > 1 {
			pos.Column--
		}
		if pos.Line == 0 {
			pos.Line = 1
		}
		path := strings.TrimPrefix(e.Context.String(), "$.")
		msg := who + ": " + e.Message
		if path != "" && path != "$" {
			msg = fmt.Sprintf("%s: %s: %s", who, path, e.Message)
		}
		if who != "Ignition" && rep.errorAt(pos) {
			continue // Ignition already said what is wrong here
		}
		switch e.Kind {
		case vreport.Error:
			rep.Errorf(pos, path, "%s", msg)
		case vreport.Warn:
			rep.Warnf(pos, path, "%s", msg)
		default:
			// Info entries are Ignition's notes; keep them as warnings so
			// nothing Ignition said is lost.
			rep.Warnf(pos, path, "%s", msg)
		}
	}
}

func pithIgnitionLimits(cfg *IgnitionConfig, raw []byte, rep *Report) {
	var pr vreport.Report
	add := func(p vpath.ContextPath, format string, args ...any) {
		pr.AddOnError(p, fmt.Errorf(format, args...))
	}
	root := vpath.New("json")
	ignitionStorageLimits(cfg, add)
	checkKernelArguments(cfg, add)
	checkRes := func(p vpath.ContextPath, r igntypes.Resource) { checkIgnitionResource(&pr, p, r, false) }
	for i, r := range cfg.Ignition.Config.Merge {
		checkRes(root.Append("ignition", "config", "merge", i), r)
	}
	checkRes(root.Append("ignition", "config", "replace"), cfg.Ignition.Config.Replace)
	checkReplaceStorage(cfg, add)
	for i, r := range cfg.Ignition.Security.TLS.CertificateAuthorities {
		checkIgnitionResource(&pr, root.Append("ignition", "security", "tls", "certificateAuthorities", i), r, true)
	}
	for i, f := range cfg.Storage.Files {
		p := root.Append("storage", "files", i)
		if f.Path == "/usr" || strings.HasPrefix(f.Path, "/usr/") {
			add(p.Append("path"), "%s is on the read-only /usr image; write under /etc, /opt or /var instead", f.Path)
		}
		checkRes(p.Append("contents"), f.Contents)
		for j, a := range f.Append {
			checkRes(p.Append("append", j), a)
		}
	}
	for i, u := range cfg.Passwd.Users {
		for j, k := range u.SSHAuthorizedKeys {
			if msg, _ := checkSSHKey(string(k)); msg != "" {
				add(root.Append("passwd", "users", i, "sshAuthorizedKeys", j), "%s", msg)
			}
		}
	}
	for i, d := range cfg.Storage.Directories {
		if d.Path == "/usr" || strings.HasPrefix(d.Path, "/usr/") {
			add(root.Append("storage", "directories", i, "path"), "%s is on the read-only /usr image", d.Path)
		}
	}
	for i, l := range cfg.Storage.Links {
		if l.Path == "/usr" || strings.HasPrefix(l.Path, "/usr/") {
			add(root.Append("storage", "links", i, "path"), "%s is on the read-only /usr image", l.Path)
		}
	}
	addPithIgnitionReport(pr, raw, rep)
}

// addPithIgnitionReport adds Pith's own findings on an Ignition config to
// rep, placed at their line and column in raw (the decompressed config).
func addPithIgnitionReport(pr vreport.Report, raw []byte, rep *Report) {
	if len(pr.Entries) == 0 {
		return
	}
	if tree, err := vjson.UnmarshalToContext(raw); err == nil {
		pr.Correlate(tree)
	}
	addIgnitionReport(pr, rep, "ignition config")
}

// DecodeIgnitionResource returns the bytes of an inline data: URL
// resource (optionally gzip-compressed, which is what Butane embeds),
// checked against its verification.hash. http(s) sources are fetched by
// the first-boot stage (cloudconfig/apply).
func DecodeIgnitionResource(r igntypes.Resource) ([]byte, error) {
	if r.Source == nil {
		return nil, nil
	}
	data, err := decodeIgnitionResource(r)
	if err != nil {
		return nil, err
	}
	return data, VerifyIgnitionHash(r.Verification, data)
}

// decodeIgnitionResource decodes a data: URL and decompresses it; the
// hash is not checked.
func decodeIgnitionResource(r igntypes.Resource) ([]byte, error) {
	src := *r.Source
	if !strings.HasPrefix(src, "data:") {
		return nil, fmt.Errorf("source %q is not a data: URL (http and https sources are fetched at first boot)", src)
	}
	data, err := decodeDataURL(src)
	if err != nil {
		return nil, err
	}
	return decompressResource(r, data)
}

// decompressResource undoes a resource's compression (gzip or none).
func decompressResource(r igntypes.Resource, data []byte) ([]byte, error) {
	if r.Compression != nil && *r.Compression == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("contents are marked gzip but are not gzip: %v", err)
		}
		data, err = io.ReadAll(io.LimitReader(zr, MaxSize+1))
		if err != nil {
			return nil, fmt.Errorf("gzip contents do not decompress: %v", err)
		}
		if len(data) > MaxSize {
			return nil, fmt.Errorf("decompressed contents exceed %d MiB", MaxSize>>20)
		}
	}
	return data, nil
}

// decodeDataURL reads an RFC 2397 data: URL.
func decodeDataURL(s string) ([]byte, error) {
	meta, payload, found := strings.Cut(strings.TrimPrefix(s, "data:"), ",")
	if !found {
		return nil, fmt.Errorf("invalid data: URL: no ',' before the data")
	}
	if strings.HasSuffix(meta, ";base64") {
		b, err := base64.StdEncoding.DecodeString(payload)
		if err != nil {
			// Some encoders drop padding or use URL-safe base64.
			if b2, err2 := base64.RawStdEncoding.DecodeString(strings.TrimRight(payload, "=")); err2 == nil {
				return b2, nil
			}
			return nil, fmt.Errorf("invalid base64 in data: URL: %v", err)
		}
		return b, nil
	}
	out, err := url.PathUnescape(payload)
	if err != nil {
		return nil, fmt.Errorf("invalid percent-encoding in data: URL: %v", err)
	}
	return []byte(out), nil
}
