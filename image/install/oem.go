package install

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
)

// Where in the OEM filesystem the user-data goes, by its format: a
// #cloud-config is the OEM cloud-config every boot applies
// (agent/datasource.OEMCloudConfig); an Ignition config is config.ign,
// Flatcar's name and place (flatcar-install -i), read once on first boot
// by the initramfs and pithd (agent/datasource.OEMIgnition).
const (
	OEMUserData = "cloud-config.yml"
	OEMIgnition = "config.ign"
)

// oemFiles are the OEM files that hold user-data.
var oemFiles = []string{OEMUserData, OEMIgnition}

// checkUserData accepts what first boot can apply from the OEM partition:
// a #cloud-config or an Ignition config (gzip-compressed or not) that
// validates as pith validate validates it. It returns the OEM file name
// and the bytes to write (decompressed, as config.ign is read as JSON).
func checkUserData(data []byte) (string, []byte, error) {
	d, err := cloudconfig.Decompress(data)
	if err != nil {
		return "", nil, fmt.Errorf("user-data: %v", err)
	}
	name := ""
	switch f := cloudconfig.Detect(d); f {
	case cloudconfig.FormatCloudConfig:
		name = OEMUserData
	case cloudconfig.FormatIgnition:
		name = OEMIgnition
	default:
		return "", nil, fmt.Errorf("user-data: %s, but the OEM partition takes a #cloud-config (start the file with that line) or an Ignition config", f)
	}
	if rep := cloudconfig.Validate(d); rep.HasErrors() {
		// Every error, with its line:col, on one line.
		var errs []string
		for _, e := range rep.Entries {
			if e.Severity == cloudconfig.SeverityError {
				errs = append(errs, strings.ReplaceAll(e.String(), "\n", " "))
			}
		}
		return "", nil, fmt.Errorf("user-data is invalid (nothing written): %s", strings.Join(errs, "; "))
	}
	return name, d, nil
}

// ext4At names an ext4 filesystem at a byte offset of a disk or image in
// e2fsprogs' io syntax, so debugfs works on it without a partition device
// or a loop device.
func ext4At(disk string, offset int64) string { return fmt.Sprintf("%s?offset=%d", disk, offset) }

func debugfs(ctx context.Context, write bool, fs string, cmds ...string) (string, error) {
	args := []string{}
	if write {
		args = append(args, "-w")
	}
	if len(cmds) == 1 {
		// -R prints only the command's output (-f echoes each command).
		args = append(args, "-R", cmds[0], fs)
	} else {
		f, err := os.CreateTemp("", ".pith-debugfs-*")
		if err != nil {
			return "", err
		}
		defer os.Remove(f.Name())
		_, err = f.WriteString(strings.Join(cmds, "\n") + "\n")
		f.Close()
		if err != nil {
			return "", err
		}
		args = append(args, "-f", f.Name(), fs)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "debugfs", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debugfs %s: %v: %s", fs, err, strings.TrimSpace(stderr.String()))
	}
	// debugfs exits 0 when a command fails; its errors go to stderr.
	for _, line := range strings.Split(stderr.String(), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "debugfs ") {
			return stdout.String(), fmt.Errorf("debugfs %s: %s", fs, line)
		}
	}
	return stdout.String(), nil
}

// oemUserData returns the OEM file in the OEM filesystem that already
// holds user-data (a platform's, e.g. Vagrant's cloud-config), or "":
// pith install does not merge two configs.
func oemUserData(ctx context.Context, fs string) (string, error) {
	out, err := debugfs(ctx, false, fs, "ls -p /")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		// ls -p: /inode/mode/uid/gid/name/size/
		if f := strings.Split(line, "/"); len(f) >= 6 && slices.Contains(oemFiles, f[5]) {
			return f[5], nil
		}
	}
	return "", nil
}

// writeOEMUserData puts data into the OEM filesystem as the root-only
// file name and reads it back.
func writeOEMUserData(ctx context.Context, fs, name string, data []byte) error {
	dir, err := os.MkdirTemp("", ".pith-install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, name)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		return err
	}
	if _, err := debugfs(ctx, true, fs, "write "+src+" "+name, "sif "+name+" mode 0100600"); err != nil {
		return fmt.Errorf("writing the user-data to OEM: %v", err)
	}
	back, err := debugfs(ctx, false, fs, "cat /"+name)
	if err != nil {
		return err
	}
	if back != string(data) {
		return fmt.Errorf("OEM %s reads back %d bytes, not the %d written", name, len(back), len(data))
	}
	return nil
}
