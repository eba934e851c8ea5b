// Package cli holds the `validate` command shared by pith (on the
// workstation) and pithctl (on the node), so both report the same way.
package cli
