package cloudconfig

import (
	"bytes"
	"net"
)

// Addresses are the values substituted for $private_ipv4, $public_ipv4,
// $private_ipv6 and $public_ipv6. A nil address leaves its variable as
// written (coreos-cloudinit did the same) and Substitute reports it.
type Addresses struct {
	PrivateIPv4, PublicIPv4, PrivateIPv6, PublicIPv6 net.IP
}

// Substitute replaces the address variables in user-data text, as
// coreos-cloudinit did before parsing. Substitution keeps line numbers
// (addresses never contain newlines). It returns the variables that were
// used but have no value.
func Substitute(data []byte, a Addresses) ([]byte, []string) {
	var missing []string
	for _, v := range []struct {
		name string
		ip   net.IP
	}{
		{"$private_ipv4", a.PrivateIPv4}, {"$public_ipv4", a.PublicIPv4},
		{"$private_ipv6", a.PrivateIPv6}, {"$public_ipv6", a.PublicIPv6},
	} {
		if !bytes.Contains(data, []byte(v.name)) {
			continue
		}
		if v.ip == nil {
			missing = append(missing, v.name)
			continue
		}
		data = bytes.ReplaceAll(data, []byte(v.name), []byte(v.ip.String()))
	}
	return data, missing
}
