// Package tracker keeps the Merkle tree of a data directory current while a mount serves it.
//
// The fs package reports every mutation that crossed the mount (create, open for writing, release,
// truncate, rename, link, unlink, mkdir, rmdir, symlink); the tracker records it in the tree at once
// and hashes file content on background workers, outside the tree lock, when the last writer of a
// file closes it. It also owns everything the tree needs around the mount: the initial scan and the
// reconciliation of a snapshot with the directory, snapshots and checkpoints in DATA/.trowfs,
// verification runs and the throttled background scrub, exclusions and findings.
//
// What each operation and hash result does to the tree is decided by internal/ledger's Keeper, a
// pure state machine keyed by inode: the tracker is its driver. It reads statuses (lstat, fstat),
// hashes content, and applies the Keeper's decisions (notifications, hash jobs, findings, rescans).
//
// The tracker must never make a filesystem operation fail: it is told about operations that already
// succeeded on the backing directory, and whatever goes wrong in its own bookkeeping becomes a
// Finding and a log line, never an error returned to the registry.
//
// # Locking
//
// Tracker.mu guards the tree, the in-flight table and the findings. It is never held while reading
// file content or while calling out (logger aside); hash workers take it only to swap results in.
// The order is Tracker.mu, then (never the other way) nothing else: callbacks run after mu is
// released.
package tracker
