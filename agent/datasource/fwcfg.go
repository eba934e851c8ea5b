package datasource

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
)

// Reading a fw_cfg entry through sysfs ("raw") costs O(size²) in the
// guest: the kernel hands out at most a page per read(2) and, having no
// way to seek the port interface, re-reads the entry from its start up to
// the offset for every page. 1.4 MB took ~345 s under TCG. readFwCfg reads
// the entry once, in order, from the device's I/O ports instead (x86,
// where the kernel says fw_cfg sits in /proc/ioports), and falls back to
// sysfs everywhere else.

// fwcfgPortBase returns the first I/O port of the fw_cfg device from
// /proc/ioports ("0510-051b : QEMU0002:00" or "... : fw_cfg_io"), or
// ok=false if the kernel lists none.
func fwcfgPortBase(ioports []byte) (base uint16, ok bool) {
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

// readFwCfg returns the contents of the fw_cfg entry whose sysfs directory
// is entry (…/by_name/opt/org.pith/user-data) and how it was read.
func readFwCfg(root, entry string) (data []byte, how string, err error) {
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
	case size > cloudconfig.MaxSize:
		return nil, "", fmt.Errorf("fw_cfg %s is %d bytes, larger than %d MiB", entry, size, cloudconfig.MaxSize>>20)
	case havePorts && size > 4096:
		if b, err := readFwCfgPorts(root, f, uint16(key), int(size)); err == nil {
			return b, "fw_cfg I/O ports", nil
		}
	}
	b, err := readAllLimited(f, raw)
	return b, "sysfs", err
}

// readFwCfgPorts reads the entry through the ports, then checks its first
// page against what the kernel's sysfs file gives (one cheap read at
// offset 0): a mismatch means the ports are not the device the kernel
// drives, and the caller falls back to sysfs.
func readFwCfgPorts(root string, raw io.ReaderAt, key uint16, size int) ([]byte, error) {
	ioports, err := os.ReadFile(filepath.Join(root, "proc/ioports"))
	if err != nil {
		return nil, err
	}
	base, ok := fwcfgPortBase(ioports)
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
