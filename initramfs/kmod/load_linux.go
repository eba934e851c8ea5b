package kmod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LoadFile inserts one module into the running kernel with the given
// parameters (e.g. "async_probe"). A module that is already loaded (or
// built in under the same name) is not an error.
func LoadFile(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if filepath.Ext(path) == ".ko" {
		err = unix.FinitModule(int(f.Fd()), params, 0)
	} else {
		// finit_module only takes compressed modules when the kernel was
		// built for it; decompressing here works everywhere.
		var data []byte
		if data, err = ReadModule(path); err == nil {
			err = unix.InitModule(data, params)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading %s: %w", path, err)
	}
	return nil
}
