// Package hashtree is trowfs's in-memory Merkle tree of a data directory.
//
// It maps slash-separated relative paths to entries (files, directories,
// symlinks), gives every directory a canonical digest that depends only on
// its children's names, kinds and digests, keeps per-subtree aggregates
// (counts, bytes, counts per status, last change, oldest verification),
// diffs two trees by descending only where digests differ, and streams
// itself to and from a versioned, checksummed snapshot. The encodings are
// specified, with test vectors, in docs/tree-format.md.
//
// The package is pure. It never touches the filesystem, never reads or
// hashes file content (callers supply file digests), never imports FUSE,
// never logs and never panics on bad input: invalid paths and entries are
// errors wrapping ErrInvalidPath or ErrInvalidEntry, damaged snapshots
// errors wrapping ErrCorruptSnapshot or ErrSnapshotVersion.
//
// # Large directories
//
// A directory's children sit in a hash array mapped trie keyed by
// sha256(name): at most 32 entries per leaf, 16 children per internal node.
// Its shape depends only on the set of names, so equal directories have
// equal digests however they were built. An update marks the path from the
// root dirty and costs O(depth); the next Root (or Get, Summary, List, Walk,
// Diff, WriteSnapshot) rehashes only the dirty paths. Counts are kept exact
// on every update; times and digests are recomputed lazily. Directories of
// more than 32 entries also keep a name-ordered index for List and Walk.
//
// # Memory
//
// An entry is a 96-byte node. A file named by its own digest, as blobs are
// ("sha256:<hex>" or the bare hex), stores its name as that digest; names
// of up to 5 bytes sit inline; any other name, a symlink's target and a
// directory's contents sit behind a pointer. A million-entry directory
// costs about 127 bytes per file in all (node, HAMT leaf and name-index
// pointers, HAMT nodes), against 217 before entries were made compact.
// Files and symlinks are changed by linking a new node in place of the old
// one, unless the node was made since the last Freeze and keeps its name
// apart from its digest, in which case it is changed in place.
//
// # Concurrency
//
// A Tree holds no lock and is not safe for concurrent use. Callers
// serialise every call, read-only ones included: Get, Summary, Root, List,
// Walk, Diff and WriteSnapshot fill the digest caches and use the tree's
// scratch buffers. Callbacks passed to List, Walk and Diff must not modify
// the trees they are walking.
//
// The exception is Freeze: it returns, in O(1) after refreshing the dirty
// digests, a Frozen view of the tree that another goroutine may encode
// (Frozen.WriteSnapshot) while the tree goes on changing. Changes after a
// freeze copy the directories on their path instead of modifying what the
// view shares (see cow.go).
package hashtree
