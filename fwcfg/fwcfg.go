// Package fwcfg reads Pith's entries of QEMU's fw_cfg (opt/org.pith/...)
// as the kernel's qemu_fw_cfg driver shows them. The initramfs reads the
// user-data with it for Ignition storage, and pithd's fw_cfg datasource
// (agent/datasource) for first boot; both check the meta-data with
// ReadMetaData. It imports nothing of Pith's, so the initramfs takes it
// without the agent.
//
// Reading an entry through sysfs ("raw") costs O(size²) in the guest: the
// kernel hands out at most a page per read(2) and, having no way to seek
// the port interface, re-reads the entry from its start up to the offset
// for every page. 1.4 MB took ~345 s under TCG. Read reads the entry
// once, in order, from the device's I/O ports instead (x86, where the
// kernel says fw_cfg sits in /proc/ioports), and falls back to sysfs
// everywhere else.
package fwcfg

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ByName is where the qemu_fw_cfg driver lists fw_cfg entries by name.
const ByName = "/sys/firmware/qemu_fw_cfg/by_name"

// Dir holds Pith's entries; QEMU sets them with
// -fw_cfg name=opt/org.pith/user-data,file=...
const Dir = ByName + "/opt/org.pith"

// UserData is the entry (under Dir) with the node's user-data.
const UserData = "user-data"

// MetaData is the entry (under Dir) with what a test harness tells the
// guest about itself (its addresses): JSON in Meta's shape, optional.
const MetaData = "meta-data"

// Meta is the JSON of the meta-data entry. agent/datasource's Metadata
// has the same fields (it converts one to the other, so they cannot drift).
type Meta struct {
	Hostname      string   `json:"hostname,omitempty"`
	InstanceID    string   `json:"instance_id,omitempty"`
	PrivateIPv4   net.IP   `json:"private_ipv4,omitempty"`
	PublicIPv4    net.IP   `json:"public_ipv4,omitempty"`
	PrivateIPv6   net.IP   `json:"private_ipv6,omitempty"`
	PublicIPv6    net.IP   `json:"public_ipv6,omitempty"`
	SSHPublicKeys []string `json:"ssh_public_keys,omitempty"`
}

// ReadMetaData reads and decodes the meta-data entry below root. An absent
// entry is no meta-data (the zero Meta, no error); one that cannot be read,
// or is not JSON in Meta's shape (an address that does not parse, too), is
// an error. pithd's datasource and the initramfs both take this as the
// rule, so a meta-data the first boot would refuse stops the initramfs
// before it touches a disk.
func ReadMetaData(root string, limit uint64) (Meta, error) {
	var m Meta
	b, _, err := Read(root, MetaData, limit)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("fw_cfg opt/org.pith/%s is not valid JSON metadata: %v", MetaData, err)
	}
	return m, nil
}

// Read returns the contents of Pith's entry name (under Dir, below root)
// and how it was read, for the log. An entry larger than limit bytes is an
// error. An absent entry (or no fw_cfg at all) is an error for which
// errors.Is(err, fs.ErrNotExist) holds.
func Read(root, name string, limit uint64) (data []byte, how string, err error) {
	entry := filepath.Join(root, Dir, name)
	raw := filepath.Join(entry, "raw")
	f, err := os.Open(raw)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	size, sizeErr := readUint(filepath.Join(entry, "size"))
	key, keyErr := readUint(filepath.Join(entry, "key"))
	switch {
	case sizeErr != nil || keyErr != nil:
	case size > limit:
		return nil, "", fmt.Errorf("fw_cfg %s is %d bytes, larger than %d MiB", entry, size, limit>>20)
	case havePorts && size > 4096:
		if b, err := readPorts(root, f, uint16(key), int(size)); err == nil {
			return b, "fw_cfg I/O ports", nil
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, "", err
	}
	if uint64(len(b)) > limit {
		return nil, "", fmt.Errorf("%s is larger than %d MiB", raw, limit>>20)
	}
	return b, "sysfs", nil
}

// portBase returns the first I/O port of the fw_cfg device from
// /proc/ioports ("0510-051b : QEMU0002:00" or "... : fw_cfg_io"), or
// ok=false if the kernel lists none.
func portBase(ioports []byte) (base uint16, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(ioports))
	for sc.Scan() {
		rng, name, found := strings.Cut(sc.Text(), " : ")
		if !found {
			continue
		}
		name = strings.TrimSpace(name)
		if !strings.HasPrefix(name, "QEMU0002") && name != "fw_cfg_io" {
			continue
		}
		lo, _, _ := strings.Cut(strings.TrimSpace(rng), "-")
		v, err := strconv.ParseUint(lo, 16, 16)
		if err != nil {
			continue
		}
		return uint16(v), true
	}
	return 0, false
}

// readPorts reads the entry through the ports, then checks its first
// page against what the kernel's sysfs file gives (one cheap read at
// offset 0): a mismatch means the ports are not the device the kernel
// drives, and the caller falls back to sysfs.
func readPorts(root string, raw io.ReaderAt, key uint16, size int) ([]byte, error) {
	ioports, err := os.ReadFile(filepath.Join(root, "proc/ioports"))
	if err != nil {
		return nil, err
	}
	base, ok := portBase(ioports)
	if !ok {
		return nil, errors.New("no fw_cfg in /proc/ioports")
	}
	head := make([]byte, 4096)
	n, err := raw.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	b, err := portRead(base, key, size)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(b[:n], head[:n]) {
		return nil, errors.New("fw_cfg ports and sysfs disagree")
	}
	return b, nil
}

func readUint(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64)
}
