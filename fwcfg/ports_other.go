//go:build !amd64

package fwcfg

import "errors"

func portRead(base uint16, key uint16, n int) ([]byte, error) {
	return nil, errors.New("fw_cfg I/O ports exist only on x86")
}

const havePorts = false
