// Package peers is the node that makes trowfs instances under separate registries converge: it
// keeps the replicated state (package crdt) beside the local registry model, learns who its peers
// are and what their state roots are through gossip (hashicorp/memberlist, encrypted with the
// shared key), finds the differing registers over an authenticated HTTP data plane in O(k log n)
// exchanged bytes, and hands what the registry should hold to an Applier (package peers/oci).
//
// It must never: put a growing list into gossip (node meta carries only bounded facts), process a
// data-plane request whose MAC does not verify, merge an entry whose bytes do not hash to what the
// peer's own tree said, or fail a filesystem operation (it runs beside the mount, not in it).
//
// # Locking
//
// Node.mu guards the replica, the clock, the member table and the counters. It is never held
// across network I/O, the Applier, the store or memberlist calls (memberlist calls back into
// NodeMeta, which takes it).
package peers
