package cloudconfig

import "testing"

// TestValidateSecretFiles: a private key in write_files with permissions
// others can read is a warning at its permissions; 0600 or no permissions
// (written 0600) is clean, and so is a certificate at 0644.
func TestValidateSecretFiles(t *testing.T) {
	const key = "      -----BEGIN PRIVATE KEY-----\n      MC4CAQAwBQYDK2VwBCIEIA==\n      -----END PRIVATE KEY-----\n"
	const cert = "      -----BEGIN CERTIFICATE-----\n      MIIB\n      -----END CERTIFICATE-----\n"
	file := func(perm, content string) string {
		s := "#cloud-config\nwrite_files:\n  - path: /etc/pith/tls/member.key\n"
		if perm != "" {
			s += "    permissions: '" + perm + "'\n"
		}
		return s + "    content: |\n" + content
	}
	for _, tc := range []struct {
		name, in string
		want     []want
	}{
		{"key 0644", file("0644", key), []want{{4, 18, SeverityWarning, "holds a private key but permissions 0644"}}},
		{"key 0640", file("0640", key), []want{{4, 18, SeverityWarning, "let other users read it"}}},
		{"key 0600", file("0600", key), nil},
		{"key 0400", file("0400", key), nil},
		{"key without permissions", file("", key), nil},
		{"certificate 0644", file("0644", cert), nil},
		{"base64 key 0644", "#cloud-config\nwrite_files:\n  - path: /k\n    permissions: '0644'\n    encoding: b64\n    content: LS0tLS1CRUdJTiBPUEVOU1NIIFBSSVZBVEUgS0VZLS0tLS0K\n", []want{{4, 18, SeverityWarning, "private key"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkReport(t, Validate([]byte(tc.in)), tc.want)
		})
	}
}
