package install

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
)

// OEMUserData is where in the OEM filesystem the user-data goes: the
// OEM cloud-config first boot applies (agent/datasource.OEMCloudConfig).
const OEMUserData = "cloud-config.yml"

// checkUserData accepts what the OEM partition can apply: a #cloud-config
// that validates.
func checkUserData(data []byte) error {
	if f := cloudconfig.Detect(data); f != cloudconfig.FormatCloudConfig {
		return fmt.Errorf("user-data: %s, but the OEM partition takes a #cloud-config (start the file with that line)", f)
	}
	if err := cloudconfig.Validate(data).Err(); err != nil {
		return fmt.Errorf("user-data: %v", err)
	}
	return nil
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

// oemHasUserData reports whether the OEM filesystem already holds a
// cloud-config (a platform's, e.g. Vagrant's): pith install does not
// merge two configs.
func oemHasUserData(ctx context.Context, fs string) (bool, error) {
	out, err := debugfs(ctx, false, fs, "ls -p /")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(out, "\n") {
		// ls -p: /inode/mode/uid/gid/name/size/
		if f := strings.Split(line, "/"); len(f) >= 6 && f[5] == OEMUserData {
			return true, nil
		}
	}
	return false, nil
}

// writeOEMUserData puts data into the OEM filesystem as a root-only file
// and reads it back.
func writeOEMUserData(ctx context.Context, fs string, data []byte) error {
	dir, err := os.MkdirTemp("", ".pith-install-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, OEMUserData)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		return err
	}
	if _, err := debugfs(ctx, true, fs, "write "+src+" "+OEMUserData, "sif "+OEMUserData+" mode 0100600"); err != nil {
		return fmt.Errorf("writing the user-data to OEM: %v", err)
	}
	back, err := debugfs(ctx, false, fs, "cat /"+OEMUserData)
	if err != nil {
		return err
	}
	if back != string(data) {
		return fmt.Errorf("OEM %s reads back %d bytes, not the %d written", OEMUserData, len(back), len(data))
	}
	return nil
}
