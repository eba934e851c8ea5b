// Package e2e holds Pith's VM tests: each boots the image `make image`
// built under QEMU (KVM when usable, TCG otherwise) through harness.go and
// checks a promise end to end (boot, first boot and user-data, the
// cluster walkthrough, updates and rollback, EC2, Vagrant, reproducible
// images). They skip, saying how to run them, unless PITH_E2E_IMAGE_DIR
// and its siblings are set, as `make e2e` sets them.
package e2e
