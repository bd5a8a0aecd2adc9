// Package server runs one trowfs mount: it composes the tracker (the tree), the registry model,
// the FUSE mount, checkpoints, the scrub, the HTTP endpoint, the peer node and the healing of
// mismatched blobs from peers (heal.go), and shuts them down in order.
// cmd/trowfs is a thin layer over Start and Stop; tests drive it the same way.
//
// It must never let bookkeeping fail the registry: errors after the mount is up are logged and
// recorded as findings, never returned to a filesystem caller.
package server
