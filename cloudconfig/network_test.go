package cloudconfig

import "testing"

// networkd's files in coreos.units, as coreos-cloudinit took them.
func TestNetworkUnits(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wants    []want
	}{
		{"static address", `#cloud-config
coreos:
  units:
    - name: 10-static.network
      content: |
        [Match]
        Name=eth1
        [Network]
        Address=172.17.8.101/24
    - name: 20-br0.netdev
      runtime: true
      content: |
        [NetDev]
        Name=br0
        Kind=bridge
    - name: 30-mtu.link
      content: |
        [Match]
        MACAddress=52:54:00:12:34:56
        [Link]
        MTUBytes=1450
    - name: 80-pith-dhcp.network
      drop_ins:
        - name: 50-dns.conf
          content: |
            [Network]
            DNS=10.0.2.3
`, nil},
		{"command and enable are ignored", `#cloud-config
coreos:
  units:
    - name: 10-a.network
      command: restart
      enable: true
      content: |
        [Match]
        Name=eth0
`, []want{{5, 16, W, "the command is ignored"}, {6, 15, W, "enable is ignored"}}},
		{"mask and template are errors", `#cloud-config
coreos:
  units:
    - name: x@.network
      content: "[Match]\nName=e*\n"
    - name: 99-b.network
      mask: true
`, []want{{4, 13, E, "cannot be templates"}, {6, 7, W, "no content or drop-ins"}, {7, 13, E, "cannot be masked"}}},
		{"no Match section", `#cloud-config
coreos:
  units:
    - name: 10-all.network
      content: |
        [Network]
        DHCP=yes
`, []want{{5, 16, W, "no [Match] section"}}},
		{"unknown type still rejected", `#cloud-config
coreos:
  units:
    - name: a.networks
      content: "[Match]\n"
`, []want{{4, 13, E, "unknown unit type \"networks\""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rep := Parse([]byte(tc.in))
			checkReport(t, rep, tc.wants)
		})
	}
}

func TestIsNetworkUnit(t *testing.T) {
	for name, want := range map[string]bool{
		"a.network": true, "b.netdev": true, "c.link": true, "d.service": false, "network": false, "e.network.d": false, "f.links": false,
	} {
		if IsNetworkUnit(name) != want {
			t.Errorf("IsNetworkUnit(%q) = %v", name, !want)
		}
	}
}
