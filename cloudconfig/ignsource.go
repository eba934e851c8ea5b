package cloudconfig

// Ignition resources (file contents, appends, merged and replacing
// configs, CA bundles): where their bytes may come from and how they are
// verified. Validation checks what it can without the network (a data:
// URL's hash); the first-boot stage fetches http(s) sources and verifies
// every hash before anything is written (cloudconfig/apply).

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"

	igntypes "github.com/coreos/ignition/v2/config/v3_5/types"
	vpath "github.com/coreos/vcontext/path"
	vreport "github.com/coreos/vcontext/report"
)

// SourceScheme returns the scheme of an Ignition resource's source
// ("data", "http", "https", ...), lower-cased.
func SourceScheme(src string) string {
	if strings.HasPrefix(src, "data:") {
		return "data"
	}
	u, err := url.Parse(src)
	if err != nil || u.Scheme == "" {
		return ""
	}
	return strings.ToLower(u.Scheme)
}

// RedactSource returns an Ignition source fit for logs and error
// messages: user info and query values (pre-signed URLs' tokens) are
// masked, the fragment dropped, a data: URL named only as such.
func RedactSource(src string) string {
	if SourceScheme(src) == "data" {
		return "a data: URL"
	}
	u, err := url.Parse(src)
	if err != nil {
		return "an unparsable URL"
	}
	const mask = "xxxxx"
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(mask, mask)
		} else {
			u.User = url.User(mask)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{mask}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// VerifyIgnitionHash checks data against v's hash ("sha512-<hex>" or
// "sha256-<hex>"); no hash passes. data is the decompressed contents:
// Ignition hashes what it writes, not what it downloaded.
func VerifyIgnitionHash(v igntypes.Verification, data []byte) error {
	if v.Hash == nil {
		return nil
	}
	fn, want, err := parseIgnitionHash(*v.Hash)
	if err != nil {
		return err
	}
	var got []byte
	switch fn {
	case "sha512":
		s := sha512.Sum512(data)
		got = s[:]
	case "sha256":
		s := sha256.Sum256(data)
		got = s[:]
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("contents have the wrong %s sum: verification.hash expects %x, the contents' is %x", fn, want, got)
	}
	return nil
}

// parseIgnitionHash splits "sha512-<hex>" and decodes the sum. Ignition's
// own validation checks the function and the length; the hex digits are
// checked here, so a typo is found by `pith validate`, not at boot.
func parseIgnitionHash(h string) (fn string, sum []byte, err error) {
	fn, hexSum, ok := strings.Cut(h, "-")
	if !ok {
		return "", nil, fmt.Errorf("verification.hash %q is malformed: write sha512-<hex> or sha256-<hex>", h)
	}
	size := 0
	switch fn {
	case "sha512":
		size = sha512.Size
	case "sha256":
		size = sha256.Size
	default:
		return "", nil, fmt.Errorf("verification.hash %q: unsupported hash function %q (use sha512 or sha256)", h, fn)
	}
	sum, err = hex.DecodeString(hexSum)
	if err != nil {
		return "", nil, fmt.Errorf("verification.hash %q: the sum is not hexadecimal", h)
	}
	if len(sum) != size {
		return "", nil, fmt.Errorf("verification.hash %q: a %s sum has %d hex digits, not %d", h, fn, 2*size, len(hexSum))
	}
	return fn, sum, nil
}

// checkIgnitionResource validates one resource at p: its scheme, a
// data: URL's contents against its hash, the hash's form. Plain HTTP is a
// warning (it keeps working, as in Ignition). isCA: the contents must be
// PEM certificates.
func checkIgnitionResource(pr *vreport.Report, p vpath.ContextPath, r igntypes.Resource, isCA bool) {
	if r.Verification.Hash != nil {
		if _, _, err := parseIgnitionHash(*r.Verification.Hash); err != nil {
			pr.AddOnError(p.Append("verification", "hash"), err)
			return
		}
	}
	if r.Source == nil {
		return
	}
	src := *r.Source
	switch SourceScheme(src) {
	case "data":
		data, err := decodeIgnitionResource(r)
		if err != nil {
			pr.AddOnError(p.Append("source"), err)
			return
		}
		if err := VerifyIgnitionHash(r.Verification, data); err != nil {
			pr.AddOnError(p.Append("verification", "hash"), err)
			return
		}
		if isCA {
			if err := checkPEMCerts(data); err != nil {
				pr.AddOnError(p.Append("source"), err)
			}
		}
	case "https":
	case "http":
		msg := "fetched over plain HTTP at first boot: anyone on the path can change it; use https"
		if r.Verification.Hash == nil {
			msg += " or give verification.hash"
		}
		pr.AddOnWarn(p.Append("source"), fmt.Errorf("%s", msg))
	default:
		pr.AddOnError(p.Append("source"), fmt.Errorf("Pith fetches data:, http and https sources, not %q; embed the contents (butane --files-dir does this) or serve them over https", RedactSource(src)))
	}
}

// checkPEMCerts checks that data holds at least one PEM certificate and
// nothing else that could not be one.
func checkPEMCerts(data []byte) error {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("CA bundle holds a %s, not only certificates", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("CA bundle: %v", err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("CA bundle holds no PEM certificate")
	}
	return nil
}

// CertPoolFromPEM adds data's certificates (checked by checkPEMCerts) to
// pool.
func CertPoolFromPEM(pool *x509.CertPool, data []byte) error {
	if err := checkPEMCerts(data); err != nil {
		return err
	}
	pool.AppendCertsFromPEM(data)
	return nil
}

// DecodeIgnitionData decodes what a resource's bytes are: gzip per its
// compression, then the hash check. raw is the data: URL's payload or
// the downloaded body.
func DecodeIgnitionData(r igntypes.Resource, raw []byte) ([]byte, error) {
	data, err := decompressResource(r, raw)
	if err != nil {
		return nil, err
	}
	if err := VerifyIgnitionHash(r.Verification, data); err != nil {
		return nil, err
	}
	return data, nil
}

// checkReplaceStorage refuses storage.disks/filesystems beside
// ignition.config.replace. In Ignition the replacing config takes the
// place of the whole root config, storage included; Pith's initramfs
// applies storage from the user-data itself on first boot (the
// replacement is fetched later, by pithd), so the disks would be
// partitioned from a config that is meant to be discarded.
func checkReplaceStorage(cfg *IgnitionConfig, add func(vpath.ContextPath, string, ...any)) {
	if cfg.Ignition.Config.Replace.Source == nil {
		return
	}
	// What the initramfs would apply: a filesystem entry without a format
	// only names a device (Ignition and the plan skip it); a refused
	// plan is reported by ignitionStorageLimits.
	if plan, err := IgnitionStoragePlan(cfg); err != nil || plan.Empty() {
		return
	}
	add(vpath.New("json", "ignition", "config", "replace", "source"),
		"ignition.config.replace discards this whole config, storage too, but Pith's initramfs would partition and format from this config's storage.disks/raid/luks/filesystems before the replacement is fetched; remove them, or keep them here and use ignition.config.merge instead of replace")
}
