package apply

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/pith-os/pith/cloudconfig"
)

// InstallUnit runs pith.install's unattended install on a live system.
const InstallUnit = "pith-install.service"

// installDir holds what the install unit reads (on the live system's
// tmpfs ROOT, root only).
const installDir = "/run/pith/install"

// installPlan turns a pith.install section into the files and the runtime
// unit that do the install: pithctl install, then the after action. The
// unit runs only on a live system (pith.live), so user-data that reaches
// the installed machine too never reinstalls it.
func installPlan(in cloudconfig.PithInstall) ([]cloudconfig.File, []cloudconfig.Unit, error) {
	if in.Device == "" && in.Image == "" {
		return nil, nil, nil
	}
	if in.Device == "" || in.Image == "" {
		return nil, nil, errors.New("pith.install needs both device and image")
	}
	args := []string{"/usr/bin/pithctl", "install", "--device", in.Device, "--image", in.Image}
	if in.Manifest != "" {
		args = append(args, "--manifest", in.Manifest)
	}
	if in.Force {
		args = append(args, "--force")
	}
	var files []cloudconfig.File
	if in.UserData != "" {
		p := installDir + "/user-data.yml"
		files = append(files, cloudconfig.File{Path: p, Content: in.UserData, Permissions: "0600"})
		args = append(args, "--user-data", p)
	}
	for i, k := range in.PublicKeys {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, nil, fmt.Errorf("pith.install.public_keys[%d]: not a base64 ed25519 key", i)
		}
		der, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(raw))
		if err != nil {
			return nil, nil, err
		}
		p := fmt.Sprintf("%s/key-%d.pub", installDir, i)
		files = append(files, cloudconfig.File{Path: p, Content: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), Permissions: "0644"})
		args = append(args, "--key", p)
	}
	if len(in.PublicKeys) > 0 {
		args = append(args, "--require-signature")
	}
	after := ""
	switch in.After {
	case "", "poweroff":
		after = "ExecStartPost=/usr/bin/systemctl --no-block poweroff\n"
	case "reboot":
		after = "ExecStartPost=/usr/bin/systemctl --no-block reboot\n"
	}
	unit := cloudconfig.Unit{Name: InstallUnit, Runtime: true, Command: "start", Content: "[Unit]\n" +
		"Description=Pith: install to " + in.Device + " (pith.install in user-data)\n" +
		"ConditionKernelCommandLine=pith.live\n" +
		"Wants=network-online.target\n" +
		"After=network-online.target pithd-firstboot.service\n\n" +
		"[Service]\nType=oneshot\n" +
		"ExecStart=" + strings.Join(args, " ") + "\n" + after +
		"StandardOutput=journal+console\nStandardError=journal+console\n"}
	return files, []cloudconfig.Unit{unit}, nil
}
