// Package hashtree is trowfs's in-memory Merkle tree of a data directory.
//
// It maps slash-separated relative paths to entries (files, directories,
// symlinks), computes a canonical, order-independent digest for every
// directory, keeps per-subtree aggregates (counts, bytes, status counts,
// times), diffs two trees by descending only where digests differ, and
// streams itself to and from a versioned, checksummed snapshot.
//
// The package is pure: it never touches the filesystem, never hashes file
// content itself (callers supply file digests), never imports FUSE, and never
// logs. The encodings are specified in docs/tree-format.md.
//
// # Locking
//
// A Tree is not safe for concurrent use. Callers serialise every call,
// including read-only ones such as Get, Summary and Root (Root and Get fill
// lazily computed digest caches).
package hashtree
