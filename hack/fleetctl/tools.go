//go:build tools

// Package fleetctl pins the versions fleet's own fleetctl (v1.0.0, which
// predates Go modules) builds with, so Pith's tests can run the real client
// against pithd's /fleet/v1 API. Nothing here is part of Pith: build with
//
//	go build -o fleetctl github.com/coreos/fleet/fleetctl
//
// in this directory (make unit does, into ~/.cache/pith/tools).
package fleetctl

import _ "github.com/coreos/fleet/fleetctl"
