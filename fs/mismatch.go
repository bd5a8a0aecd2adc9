package fs

import (
	"strings"
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
// it holds for that name are dropped, and so is the name, so the next lookup finds the new file.
// A descriptor already open keeps the file it opened, as after a rename(2) over it.
func (s *Server) Invalidate(rel string) {
	if s.root == nil || rel == "" {
		return
	}
	dir, base := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, base = rel[:i], rel[i+1:]
	}
	parent := s.root.EmbeddedInode()
	if dir != "" {
		if parent = s.root.knownNode(dir); parent == nil {
			return // the kernel has not looked the directory up: it caches nothing below it
		}
	}
	if ch := parent.GetChild(base); ch != nil {
		_ = ch.NotifyContent(0, 0) // ENOENT: the kernel already forgot it
	}
	_ = parent.NotifyEntry(base)
}
