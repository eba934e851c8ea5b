package vm

// A software TPM 2.0 per machine (Debian's swtpm): its state lives in the
// node's directory, so PCRs reset at each power-on like a real TPM's while
// its seeds survive reboots and restarts of QEMU.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

func (m *Machine) tpmSock() string { return filepath.Join(m.Dir, "swtpm.sock") }

// startTPM starts swtpm for the next QEMU process. --terminate: it exits
// when QEMU closes the control channel, so each QEMU start gets its own.
func (m *Machine) startTPM(ctx context.Context) error {
	if !m.Config.TPM {
		return nil
	}
	if _, err := exec.LookPath("swtpm"); err != nil {
		return fmt.Errorf("--tpm needs swtpm: install Debian's swtpm and swtpm-tools (make deps)")
	}
	state := filepath.Join(m.Dir, "tpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	sock := m.tpmSock()
	os.Remove(sock)
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
		"--ctrl", "type=unixio,path="+sock, "--terminate",
		"--log", "file="+filepath.Join(m.Dir, "swtpm.log"))
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start swtpm: %v", m.Config.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(m.Dir, "swtpm.log"))
			return fmt.Errorf("%s: swtpm exited before listening: %v: %s", m.Config.Name, err, firstLine(string(log)))
		case <-ctx.Done():
			cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tpmArgs attach the TPM as a CRB device (q35's, what current firmware
// and Linux expect; both drivers are built into Debian's kernel).
func (m *Machine) tpmArgs() []string {
	if !m.Config.TPM {
		return nil
	}
	return []string{
		"-chardev", "socket,id=chrtpm,path=" + m.tpmSock(),
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-crb,tpmdev=tpm0",
	}
}
