// Package fs is the FUSE side of trowfs: a go-fuse loopback filesystem over DATA whose every
// mutation is reported to the tracker, plus a virtual, read-only .state file in every directory.
//
// Only this package imports go-fuse. The node type embeds fs.LoopbackNode for its inode and
// handles, but serves every operation itself as an *at() call relative to a descriptor of DATA
// (backing.go), so no operation depends on an absolute path fitting in PATH_MAX: a name relative
// to DATA that is itself too long is resolved from its parent directory, reached in steps beneath
// DATA. A node whose name an unlink, rmdir or rename through the mount takes while the kernel
// holds it keeps its object's kernel file handle until the kernel forgets it, so an open or stat
// that raced the rename reaches the old file, as natively (see "Identity and file handles"). The hooks
// run after the backing operation succeeded and never turn a success into a failure.
//
// # Identity and file handles
//
// A node's identity is go-fuse's loopback one and st_ino is the backing inode number: StableAttr
// Ino is the backing (device, inode) mixed as the loopback does, Gen the birth time (SQLite
// compares st_ino of a path and of a descriptor, so what stat returns must not change).
//
// A node with a name reaches its object by that name, relative to DATA's descriptor: no
// descriptor per node, so the tree may be far larger than the open-file limit. Only a node
// whose name went away needs more (Node.keepObject): it keeps the object's file handle
// (name_to_handle_at, a few dozen bytes), and an operation on it borrows an O_PATH descriptor
// from the mount's handle cache (fs/handle.go), which opens handles on demand against DATA
// (open_by_handle_at) and keeps at most Options.HandleCache (default 1024) open, the least
// recently used idle one closed first, none closed while a call uses it, and none of an object
// whose last link is gone (below). The cache is keyed by the object's (device, inode, handle
// bytes): the bytes carry the inode generation on ext4, xfs, btrfs and tmpfs, so a freed inode
// number reused by a new file is a different key and its old handle fails with ESTALE; where a
// filesystem's handle carries no generation, (device, inode) is the key. Per-name nodes of one hard-linked file that all lost their names share one entry. A
// descriptor opened from a handle is checked against (device, inode) before use.
//
// Where DATA refuses file handles (a filesystem without export support, or no
// CAP_DAC_READ_SEARCH when not root; probed once at mount and logged once), or one object has
// none (another filesystem mounted inside DATA), the node keeps an O_PATH descriptor of its own
// instead, closed when the kernel forgets it; Options.NoFileHandles forces that.
//
// A handle does not keep a file alive as a descriptor does, so the cache never closes the
// descriptor of an object whose last link is gone while a node keeps it: such a descriptor is
// pinned, outside the LRU and the bound, until the kernel forgets the node, which it does as soon
// as nothing holds it. A file or directory removed through the mount while a process holds it
// (an O_PATH descriptor, a working directory, an open) is therefore still reachable, with no link,
// as natively, and the daemon's pinned descriptors are as many as what processes hold. An
// object that still had another link when its descriptor was evicted, and whose last link then
// goes behind the mount (or by a name the kernel holds no node for), is freed: its node answers
// ESTALE, and path-based calls walk the path again and reach what the name leads to now, as a
// call that started after the rename would.
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
// The fs package holds no locks of its own besides the invalidation queue's (fs/dircache.go) and
// the handle cache's (fs/handle.go: its map, LRU list and counts; never held across a system
// call, descriptors are closed after it is released): go-fuse serialises what it must per inode,
// and the tracker guards the tree.
package fs
