// Package cloudconfig reads user-data: coreos-cloudinit's #cloud-config
// dialect (plus Pith's `pith:` section), #! scripts, and Ignition v3 JSON.
// It reports every problem it finds at once, each with a line and column,
// so an operator can fix a config before a machine ever boots. Package
// cloudconfig/apply applies a valid config to a node.
package cloudconfig
