// Package fs is the FUSE side of trowfs: a go-fuse loopback filesystem over DATA whose every
// mutation is reported to the tracker, plus a virtual, read-only .state file in every directory.
//
// Only this package imports go-fuse. The node type embeds fs.LoopbackNode for its inode and
// handles, but serves every operation itself as an *at() call relative to a descriptor of DATA
// (backing.go), so no operation depends on an absolute path fitting in PATH_MAX: a name relative
// to DATA that is itself too long is resolved from its parent directory, reached in steps beneath
// DATA. A node whose name an unlink or rename through the mount takes while the kernel holds it
// keeps an O_PATH descriptor of its object until the kernel forgets it, so an open or stat that
// raced the rename reaches the old file, as natively. The hooks run after the backing operation
// succeeded and never turn a success into a failure.
//
// Files opened read-only get kernel passthrough (reads never enter the daemon). Files opened for
// writing get passthrough too in the default write mode; their content is hashed from the backing
// file when the last writer closes it. In daemon write mode writes pass through the daemon and
// sequential writes are hashed as they stream past.
//
// # Names trowfs reserves
//
// ".state" in every directory is the virtual state file; it is never listed by readdir, and a
// real file of that name in DATA is left alone and reported. ".trowfs" at the root is trowfs's own
// directory in DATA; it is invisible through the mount.
//
// # Extended attributes and hard links
//
// The user.trowfs. namespace is served from the tree only (never the backing file's copy), is not
// listed, and cannot be set or removed. getxattr carries only the node, so with kernel passthrough
// every name of a multiply-linked regular file gets its own node (Node.ownNode) and the other
// names' cached attributes are invalidated after a change through one; without passthrough one
// node serves the inode and answers for all its names (docs/state.md). A per-name node whose name
// went away while the kernel holds it runs the loopback's path-based operations through another
// name of its file (Node.named), as the single node of a file with two names would.
//
// # Known-bad blobs
//
// The one exception to "never turn a success into a failure" is opt-in: with Options.Refuse set
// (--on-mismatch=eio), an open for reading of a path it names fails with EIO before the backing
// open (fs/mismatch.go). Server.Invalidate drops the kernel's cached view of a file that was
// replaced in DATA behind the mount (a heal), so the next lookup, read and listing see the new file.
//
// # Kernel caching
//
// Entries and attributes are cached for a minute, directory listings until invalidated
// (FOPEN_CACHE_DIR, fs/dircache.go). The kernel drops what a change through the mount makes stale;
// a change behind the mount that a verification run or scrub finds reaches the kernel through the
// tracker's SetBehindHook, and a heal's through Server.Invalidate. A change behind the mount that
// nothing finds stays invisible until the directory's cached attributes expire and its mtime moved.
//
// # Locking
//
// The fs package holds no locks of its own besides the invalidation queue's (fs/dircache.go):
// go-fuse serialises what it must per inode, and the tracker guards the tree.
package fs
