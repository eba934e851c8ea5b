package cloudconfig

import (
	"bytes"
	"fmt"
	"strconv"
)

// IsPrivateKey reports whether data holds a PEM private key (PKCS#8, EC,
// RSA or OpenSSH): write_files writes such a file 0600 unless the user
// gave permissions.
func IsPrivateKey(data []byte) bool {
	return bytes.Contains(data, []byte("-----BEGIN ")) && bytes.Contains(data, []byte("PRIVATE KEY-----"))
}

// checkSecretFiles warns about a private key in write_files whose
// permissions let group or others read it.
func checkSecretFiles(c *Config, rep *Report) {
	for i, f := range c.WriteFiles {
		if f.Permissions == "" {
			continue
		}
		mode, err := strconv.ParseUint(f.Permissions, 8, 32)
		if err != nil || mode&0o077 == 0 {
			continue
		}
		data, err := DecodeContent(f.Content, f.Encoding)
		if err != nil || !IsPrivateKey(data) {
			continue
		}
		p := fmt.Sprintf("write_files[%d].permissions", i)
		rep.Warnf(c.Pos(p), p, "%s holds a private key but permissions %s let other users read it; use '0600'", f.Path, f.Permissions)
	}
}
