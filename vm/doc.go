// Package vm starts and manages QEMU machines for `pith boot` and the VM
// tests: per-node copy-on-write disks, serial logs, fw_cfg user-data,
// user-mode networking forwarded to 127.0.0.1 only, a private VM-to-VM
// network switched in-process, QMP control, and no orphaned QEMU ever.
package vm
