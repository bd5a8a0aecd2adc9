// Package crdt is the replicated registry state that trowfs peers converge on: pure (no I/O, no
// goroutines, no network, no FUSE, no wall clock of its own), deterministic, and safe to test
// without root.
//
// A State holds one last-writer-wins register per manifest and per tag of every repository,
// stamped by a hybrid logical clock (Clock, Stamp). Merge is the join (the greater stamp wins);
// deletes are tombstones, so a peer that missed a delete cannot bring the value back with its
// older add. Observe turns the local registry's View into new stamped entries, and only for real
// local changes, so that what was applied from a peer is never stamped again.
//
// A Merkle index (a 16-way trie over the key hashes) gives the state a canonical Root and lets two
// replicas find their k differing registers in O(k log n) with Sync, exchanging Summaries one level
// per round trip. The wire and persistent encodings are in encode.go, wire.go and persist.go, and
// are specified byte by byte, with test vectors, in docs/peers.md ("State model", "Encoding").
//
// # Clocks
//
// Clock.Now never goes back, even when the wall clock does. A remote stamp more than MaxDrift ahead
// of the wall clock is refused by Clock.Admit and counted by Clock.Drift, so a peer with a broken
// clock is visible and quarantined rather than dragging the fleet's stamps into the future.
//
// # Locking
//
// Nothing here locks: a State, a Clock and a Sync each belong to one goroutine at a time.
package crdt
