// Package channels implements Pith's release channels: signed release
// manifests, compressed payloads, the repository layout that `pith release`
// writes and `pith channel serve` serves, and the client the update agent
// uses to fetch, verify and apply a release.
//
// A repository looks like this (old versions stay):
//
//	DIR/channels/stable.json       the channel's current manifest
//	DIR/channels/stable.json.sig   its detached signature(s)
//	DIR/1.2.3/usr                  payloads of one version: raw when zstd
//	DIR/1.2.3/vmlinuz.zst          could not shrink them (a squashfs USR),
//	DIR/1.2.3/initrd.zst           else compressed
//	DIR/1.2.3/manifest.json(.sig)  the manifest as first released
package channels
