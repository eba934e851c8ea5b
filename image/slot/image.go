package slot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// EnvPathOnESP is where grubenv lives inside the ESP.
const EnvPathOnESP = "grub/grubenv"

// espOffset finds the EFI-SYSTEM partition's byte offset on dev.
func espOffset(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ss, primary, _, err := openGPT(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", dev, err)
	}
	for _, e := range primary.list() {
		if e.name == "EFI-SYSTEM" {
			raw := primary.entries[(e.index-1)*primary.entrySize:]
			return int64(binary.LittleEndian.Uint64(raw[32:40])) * ss, nil
		}
	}
	return 0, fmt.Errorf("%s: no partition labelled EFI-SYSTEM", dev)
}

// withImageEnv runs fn on a copy of the grubenv inside a raw disk image's
// ESP (through mtools, no mounting) and writes it back if fn changed it.
// For hosts and tests working on image files; a running node uses the
// mounted ESP's grubenv with Status, SetTrial and MarkGood directly.
func withImageEnv(img string, fn func(envPath string) error) error {
	off, err := espOffset(img)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pith-grubenv-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env := filepath.Join(dir, "grubenv")
	vol := fmt.Sprintf("%s@@%d", img, off)
	mtools := func(args ...string) error {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s (install mtools: make deps)", args[0], err, bytes.TrimSpace(out))
		}
		return nil
	}
	// Both copies; the second is absent in images from before the copies
	// and until the first write.
	files := map[string]string{env: "::/" + EnvPathOnESP, env + EnvCopySuffix: "::/" + EnvPathOnESP + EnvCopySuffix}
	if err := mtools("mcopy", "-n", "-i", vol, files[env], env); err != nil {
		return err
	}
	_ = mtools("mcopy", "-n", "-i", vol, files[env+EnvCopySuffix], env+EnvCopySuffix)
	before := map[string][]byte{}
	for local := range files {
		before[local], _ = os.ReadFile(local)
	}
	if err := fn(env); err != nil {
		return err
	}
	for local, onESP := range files {
		after, err := os.ReadFile(local)
		if errors.Is(err, os.ErrNotExist) || (err == nil && bytes.Equal(before[local], after)) {
			continue
		}
		if err != nil {
			return err
		}
		if err := mtools("mcopy", "-o", "-i", vol, local, onESP); err != nil {
			return err
		}
	}
	return nil
}

// ImageStatus is Status for a raw disk image, reading grubenv from its ESP.
func ImageStatus(img string) (*State, error) {
	var st *State
	err := withImageEnv(img, func(env string) error {
		var err error
		st, err = Status(img, env)
		return err
	})
	return st, err
}

// ImageSetTrial is SetTrial for a raw disk image.
func ImageSetTrial(img string, s Slot) error {
	return withImageEnv(img, func(env string) error { return SetTrial(img, env, s) })
}

// ImageMarkGood is MarkGood for a raw disk image.
func ImageMarkGood(img string, s Slot) error {
	return withImageEnv(img, func(env string) error { return MarkGood(img, env, s) })
}
