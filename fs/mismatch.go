package fs

import (
	"syscall"
)

// Refuser says whether a path (relative to DATA) must not be opened for reading: its content is
// known not to match the digest its name promises (`--on-mismatch=eio`). It is called on every
// open, so it must be cheap and must not block; nil refuses nothing.
type Refuser func(rel string) bool

// refused is the errno an open with flags of this node gets: EIO when the node's file is a known
// bad blob and the open reads, 0 otherwise. An open for writing only is let through: a registry
// replacing the blob writes it.
func (n *Node) refused(flags uint32) syscall.Errno {
	if n.m.refuse == nil || flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		return 0
	}
	rel, ok := n.relPath()
	if !ok || !n.m.refuse(rel) {
		return 0
	}
	return syscall.EIO
}

// Invalidate tells the kernel that the file at rel (relative to DATA) was replaced in DATA behind
// the mount (a heal renamed a verified copy over it): the cached pages and attributes of the node
// it holds for that name are dropped, and so are the name and the parent directory's cached
// listing (which holds the old inode number), so the next lookup and listing find the new file.
// A descriptor already open keeps the file it opened, as after a rename(2) over it. It must not
// be called with the tracker lock held (see invalidate).
func (s *Server) Invalidate(rel string) { s.invalidate(rel) }
