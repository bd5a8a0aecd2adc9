package fs

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/exactmode"
	"github.com/trowfs/trowfs/internal/tracker"
)

// Node is a directory, file or symlink of the mount: a loopback node whose mutations feed the
// tracker.
type Node struct {
	gofs.LoopbackNode
	m *mountState
	// birth is the loopback generation (from the birth time) of the file a per-name node was
	// made for (Node.ownNode); 0 for every other node. Set before the node is published.
	birth uint64
	// kept is what the node keeps of its backing object once an unlink or rename through the
	// mount took its name while the kernel held the node (keepObject): a file handle, or a
	// descriptor where handles are refused (fs/handle.go); nil for none. Dropped at OnForget.
	kept atomic.Pointer[keptObject]
}

// The go-fuse interfaces Node implements beyond those LoopbackNode brings.
var (
	_ = (gofs.NodeLookuper)((*Node)(nil))
	_ = (gofs.NodeCreater)((*Node)(nil))
	_ = (gofs.NodeOpener)((*Node)(nil))
	_ = (gofs.NodeMkdirer)((*Node)(nil))
	_ = (gofs.NodeMknoder)((*Node)(nil))
	_ = (gofs.NodeRmdirer)((*Node)(nil))
	_ = (gofs.NodeUnlinker)((*Node)(nil))
	_ = (gofs.NodeRenamer)((*Node)(nil))
	_ = (gofs.NodeSymlinker)((*Node)(nil))
	_ = (gofs.NodeLinker)((*Node)(nil))
	_ = (gofs.NodeSetattrer)((*Node)(nil))
	_ = (gofs.NodeGetxattrer)((*Node)(nil))
	_ = (gofs.NodeSetxattrer)((*Node)(nil))
	_ = (gofs.NodeRemovexattrer)((*Node)(nil))
	_ = (gofs.NodeListxattrer)((*Node)(nil))
	_ = (gofs.NodeOpendirHandler)((*Node)(nil))
	_ = (gofs.NodeReaddirer)((*Node)(nil))
)

// relPath is the node's path relative to DATA ("" for the root), and false when the node has
// no name any more: a file unlinked (or a directory removed) while the kernel still holds it,
// open or in the middle of an operation. go-fuse's Inode.Path(nil) returns "" for such an
// orphan as for the root, and the tracker would take it for a file at the root.
func (n *Node) relPath() (string, bool) {
	root := n.Root()
	var segs []string
	for p := n.EmbeddedInode(); p != root; {
		name, parent := p.Parent()
		if parent == nil {
			return "", false
		}
		segs = append(segs, name)
		p = parent
	}
	slices.Reverse(segs)
	return strings.Join(segs, "/"), true
}

// rel is relPath without the flag: "" for the root and for an orphan (see relPath).
func (n *Node) rel() string {
	p, _ := n.relPath()
	return p
}

// child is the path of name in this directory, and false when the directory has no name any
// more (removed meanwhile: nothing in it can be recorded).
func (n *Node) child(name string) (string, bool) {
	p, ok := n.relPath()
	if !ok {
		return "", false
	}
	if p != "" {
		return p + "/" + name, true
	}
	return name, true
}

// named is the node a path-based operation (setattr without a handle, xattrs, open, link) runs on,
// with its path: n itself while it has a name. A node of a regular file whose name went away while
// the kernel still holds it (unlinked or renamed over while open) has no path, but with per-name
// nodes its file may keep other names: then it is the node of one of those, so that fchmod, fsetxattr and the like on the
// descriptor succeed as they do natively and as they do with one node per file. ok is false when
// the file has no name the mount knows; the loopback then answers ENOENT.
func (n *Node) named() (*Node, string, bool) { return n.namedExcept(nil) }

// namedExcept is named avoiding the names in tried (which just failed with ENOENT).
func (n *Node) namedExcept(tried []string) (*Node, string, bool) {
	rel, ok := n.relPath()
	sa := n.StableAttr()
	if sa.Mode&syscall.S_IFMT != syscall.S_IFREG || (ok && !slices.Contains(tried, rel)) {
		return n, rel, ok
	}
	if n.birth != 0 {
		sa.Gen = n.birth
	}
	for _, p := range n.m.t.FileNames(sa.Ino) {
		if slices.Contains(tried, p) {
			continue
		}
		if ch := n.knownNode(p); ch != nil && sameIdentity(ch, sa) {
			if s, ok := ch.Operations().(*Node); ok {
				return s, p, true
			}
		}
	}
	return n, "", false
}

// onName runs a path-based operation on named's node. When it fails with ENOENT while the file
// still has a name (an unlink or rename of one name of a hard-linked file raced it and took the
// path it used), it runs again on another name of the file, up to three: natively an operation
// on a descriptor never fails because a name went away. A file with one name is left as the
// loopback has it.
func (n *Node) onName(op func(on *Node) syscall.Errno) (on *Node, rel string, ok bool, errno syscall.Errno) {
	var tried []string
	for {
		on, rel, ok = n.namedExcept(tried)
		if !ok && len(tried) > 0 {
			return on, rel, ok, syscall.ENOENT // every name went away
		}
		errno = op(on)
		if errno != syscall.ENOENT || !ok || len(tried) == 3 || n.StableAttr().Mode&syscall.S_IFMT != syscall.S_IFREG ||
			len(n.m.t.FileNames(n.StableAttr().Ino)) == 0 {
			return on, rel, ok, errno // a file with one name: its ENOENT stands, as with the plain loopback
		}
		tried = append(tried, rel)
	}
}

// pathNode is named's node alone; it costs nothing for a node that is in a directory.
func (n *Node) pathNode() *Node {
	if _, parent := n.Parent(); parent != nil {
		return n
	}
	s, _, _ := n.named()
	return s
}

func (n *Node) isRoot() bool { return n.EmbeddedInode() == n.Root() }

// reserved reports whether name in this directory belongs to trowfs.
func (n *Node) reserved(name string) bool {
	return name == tracker.StateFileName || (name == tracker.StateDirName && n.isRoot())
}

// Lookup serves the virtual .state and hides DATA/.trowfs.
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name == tracker.StateFileName {
		return n.m.stateInode(ctx, n, out)
	}
	if name == tracker.StateDirName && n.isRoot() {
		return nil, syscall.ENOENT
	}
	ch, errno := n.lookupBacking(ctx, name, out)
	if errno != 0 {
		return ch, errno
	}
	return n.ownNode(ctx, name, ch, out.Attr.Nlink), 0
}

// ownNode gives each name of a multiply-linked regular file its own FUSE node, so that a node
// always has exactly one name and getxattr, which carries only the node, can answer for the name
// it was asked through (docs/state.md). go-fuse finds known nodes by {Ino, Gen}: each per-name
// node gets a generation of its own, Ino (hence st_ino) stays the backing one. Only with kernel
// passthrough (perName), where every read, write and mmap goes to the backing file and the kernel
// keeps no page cache per node.
//
// A name that already has a node for this file keeps it, whatever the link count is now: a second
// lookup of a name gets the same node id, and a link count dropping to 1 does not swap the node
// under an open descriptor. The generation is never derived from the name: after a rename between
// two names of one file (which changes nothing on disk), go-fuse has moved the source name's node
// onto the target name, and a node found by the source name's generation would then serve both.
func (n *Node) ownNode(ctx context.Context, name string, ch *gofs.Inode, nlink uint32) *gofs.Inode {
	sa := ch.StableAttr()
	if !n.m.perName.Load() || sa.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return ch
	}
	if old := n.GetChild(name); old != nil && sameIdentity(old, sa) {
		return old
	}
	if nlink < 2 {
		return ch
	}
	node := n.m.newNode()
	node.birth = sa.Gen
	sa.Gen = n.m.nameGens.Add(1) | 1<<63
	return n.NewInode(ctx, node, sa)
}

// sameIdentity reports whether the known node in is the file whose loopback identity is sa: the
// loopback's own node for it, or a per-name node made from it.
func sameIdentity(in *gofs.Inode, sa gofs.StableAttr) bool {
	if in.StableAttr() == sa {
		return true
	}
	on, ok := in.Operations().(*Node)
	return ok && on.birth != 0 && on.birth == sa.Gen && in.StableAttr().Ino == sa.Ino
}

// notifySiblings drops the kernel's cached attributes (and, with content, cached pages) of the
// nodes of this file's other names, after an operation through this name changed them. Nothing to
// do without per-name nodes: then all names share one node. Names are those the tracker knows.
func (n *Node) notifySiblings(rel string, content bool) {
	if !n.m.perName.Load() || rel == "" {
		return
	}
	n.notifyNames(n.m.t.LinkNames(rel), content)
}

// contentChanged tells the kernel nodes of the file's other names that its content and size
// changed through this node, even when this node lost its own name meanwhile (named).
func (n *Node) contentChanged() {
	if !n.m.perName.Load() {
		return
	}
	on, rel, ok := n.named()
	if !ok {
		return
	}
	on.notifySiblings(rel, true)
	if on != n {
		on.notifySelf(true)
	}
}

// notifySelf drops the kernel's cached attributes (and, with content, pages) of this node.
func (n *Node) notifySelf(content bool) {
	off := int64(-1)
	if content {
		off = 0
	}
	_ = n.NotifyContent(off, 0) // ENOENT: the kernel already forgot it
}

func (n *Node) notifyNames(names []string, content bool) {
	off := int64(-1) // attributes only
	if content {
		off = 0 // and every page
	}
	self, ino := n.EmbeddedInode(), n.StableAttr().Ino
	for _, p := range names {
		if ch := n.knownNode(p); ch != nil && ch != self && ch.StableAttr().Ino == ino {
			_ = ch.NotifyContent(off, 0) // ENOENT: the kernel already forgot it
		}
	}
}

// knownNode is the node go-fuse holds for rel, or nil when the kernel has not looked it up.
func (n *Node) knownNode(rel string) *gofs.Inode {
	in := n.Root()
	for _, c := range strings.Split(rel, "/") {
		if in = in.GetChild(c); in == nil {
			return nil
		}
	}
	return in
}

// Create creates and opens a file; it is pending until its last writer closes it.
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.reserved(name) {
		return nil, nil, 0, syscall.EPERM
	}
	var ch *gofs.Inode
	var fh gofs.FileHandle
	var fl uint32
	var errno syscall.Errno
	// The kernel applied the caller's umask to mode already (internal/exactmode).
	exactmode.Do(mode, func() { ch, fh, fl, errno = n.createBacking(ctx, name, flags, mode, out) })
	if errno != 0 {
		return ch, fh, fl, errno
	}
	ch = n.ownNode(ctx, name, ch, out.Attr.Nlink) // O_CREAT of an existing hard-linked file
	// rel is "" if the directory went away: the file has no name to record.
	rel, _ := n.child(name)
	wh, wfl := n.m.writeHandle(ch.Operations().(*Node), rel, fh, true)
	return ch, wh, fl | wfl, 0
}

// Open opens a file; an open for writing (or with O_TRUNC) starts a write session.
func (n *Node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.refused(flags); errno != 0 {
		return nil, 0, errno
	}
	var fh gofs.FileHandle
	var fl uint32
	_, _, _, errno := n.onName(func(on *Node) (errno syscall.Errno) {
		fh, fl, errno = on.openBacking(flags)
		return errno
	})
	if errno != 0 {
		return fh, fl, errno
	}
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY && flags&syscall.O_TRUNC == 0 {
		if !n.m.passthrough {
			return readHandle{fh.(*gofs.LoopbackFile)}, fl, 0
		}
		return fh, fl, 0
	}
	// The name is read after the open: an unlink may have orphaned the node meanwhile (then
	// rel is "" and the session has no name), and the tracker checks that the name still
	// leads to the opened file.
	on, rel, _ := n.named()
	wh, wfl := n.m.writeHandle(on, rel, fh, false)
	return wh, fl | wfl, 0
}

func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	var ch *gofs.Inode
	var errno syscall.Errno
	exactmode.Do(mode, func() { ch, errno = n.mkdirBacking(ctx, name, mode, out) })
	if p, ok := n.child(name); errno == 0 && ok {
		n.m.t.Mkdir(p)
	}
	return ch, errno
}

func (n *Node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	var ch *gofs.Inode
	var errno syscall.Errno
	exactmode.Do(mode, func() { ch, errno = n.mknodBacking(ctx, name, mode, rdev, out) })
	if p, ok := n.child(name); errno == 0 && ok && mode&syscall.S_IFMT == syscall.S_IFREG {
		n.m.t.Created(p)
	}
	return ch, errno
}

func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.reserved(name) {
		return syscall.EPERM
	}
	errno := n.unlinkBacking(name, unix.AT_REMOVEDIR)
	if p, ok := n.child(name); errno == 0 && ok {
		n.m.t.Rmdir(p)
	}
	return errno
}

func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.reserved(name) {
		return syscall.EPERM
	}
	defer n.m.t.NameOp()()
	rel, rok := n.child(name)
	var others []string // the names whose link count drops
	var victim *Node
	if ch := n.GetChild(name); ch != nil && n.m.perName.Load() {
		victim, _ = ch.Operations().(*Node)
	}
	if victim != nil && rok {
		others = n.m.t.LinkNames(rel)
	}
	errno := n.unlinkBacking(name, 0)
	if errno == 0 && rok {
		n.m.t.Unlink(rel)
		if len(others) > 0 {
			victim.notifyNames(others, false)
		}
	}
	return errno
}

func (n *Node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*Node)
	if !ok {
		return syscall.EXDEV
	}
	if n.reserved(name) || np.reserved(newName) {
		return syscall.EPERM
	}
	from, fok := n.child(name)
	to, tok := np.child(newName)
	defer n.m.t.NameOp()()
	// Two names of one file: rename(2) succeeds and does nothing. The kernel skips such a rename
	// itself when both names share a node; with per-name nodes it reaches us and must change
	// nothing in the tree either.
	target := np.GetChild(newName)
	same := sameFile(n.GetChild(name), target)
	// A replaced target may be one name of a hard-linked file: its other names' nodes cache a
	// link count that drops, as at unlink.
	var others []string
	var victim *Node
	if target != nil && !same && flags&renameExchange == 0 && tok && n.m.perName.Load() {
		if victim, _ = target.Operations().(*Node); victim != nil {
			others = n.m.t.LinkNames(to)
		}
	}
	errno := n.renameBacking(name, np, newName, flags)
	if errno == 0 && !same && fok && tok {
		n.m.t.Rename(from, to, flags&renameExchange != 0)
	}
	if errno == 0 && len(others) > 0 {
		victim.notifyNames(others, false)
	}
	return errno
}

// sameFile reports whether two known nodes are names of one regular file.
func sameFile(a, b *gofs.Inode) bool {
	return a != nil && b != nil && a.StableAttr().Ino == b.StableAttr().Ino &&
		a.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFREG && b.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFREG
}

// renameExchange is RENAME_EXCHANGE from renameat2(2).
const renameExchange = 0x2

func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	ch, errno := n.symlinkBacking(ctx, target, name, out)
	if p, ok := n.child(name); errno == 0 && ok {
		n.m.t.Symlink(p, target)
	}
	return ch, errno
}

func (n *Node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	tn, ok := target.(*Node)
	if !ok {
		return nil, syscall.EXDEV
	}
	var ch *gofs.Inode
	tn, oldRel, ook, errno := tn.onName(func(on *Node) (errno syscall.Errno) {
		ch, errno = n.linkBacking(ctx, on, name, out)
		return errno
	})
	if errno != 0 {
		return ch, errno
	}
	ch = n.ownNode(ctx, name, ch, out.Attr.Nlink)
	if p, ok := n.child(name); ok {
		if ook {
			n.m.t.Link(oldRel, p)
		} else {
			n.m.t.Created(p) // the old name went away meanwhile: record the new one from disk
		}
	}
	if n.m.perName.Load() && ook {
		// The new name got a node of its own, and the kernel updates the link count only of
		// the node LINK returns.
		_ = tn.NotifyContent(-1, 0)
		tn.notifySiblings(oldRel, false)
	}
	return ch, 0
}

// Setattr truncates, chmods, chowns and sets times; a size change makes the file pending.
func (n *Node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	on, rel, rok, errno := n.onName(func(on *Node) syscall.Errno { return on.setattrBacking(ctx, f, in, out) })
	if errno != 0 {
		return errno
	}
	if n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return 0
	}
	_, sized := in.GetSize()
	if sized {
		if wh, ok := f.(*writeHandle); ok {
			wh.sess.Truncated()
		} else if rok {
			n.m.t.Truncated(rel)
		}
	} else if rok {
		n.m.t.Touched(rel)
	}
	on.notifySiblings(rel, sized)
	if on != n {
		on.notifySelf(sized)
	}
	return 0
}

// Getxattr serves the user.trowfs. namespace from the tree; everything else is the backing file's.
// A name the tree does not have (added behind the mount, unlinked while open) has no trowfs
// attributes: ENODATA, never the backing file's own copy, which anyone who can write DATA can forge.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !isTrowfsXattr(attr) {
		// The common case, and a hot one: the kernel asks for security.capability before
		// every write. No path lookup for it.
		sz, errno := n.pathNode().getxattrBacking(attr, dest)
		if errno == syscall.ENOENT {
			_, _, _, errno = n.onName(func(on *Node) (errno syscall.Errno) {
				sz, errno = on.getxattrBacking(attr, dest)
				return errno
			})
		}
		return sz, errno
	}
	v, ok := n.trowfsXattr(attr)
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// trowfsXattr is the value of a user.trowfs. attribute of this node's name.
func (n *Node) trowfsXattr(attr string) ([]byte, bool) {
	if attr != XattrDigest && attr != XattrStatus {
		return nil, false
	}
	rel := n.rel()
	if rel == "" && !n.isRoot() {
		return nil, false // unlinked while open: no name, hence no entry in the tree
	}
	return n.m.xattrOf(rel, attr, n.m.perName.Load())
}

// Listxattr lists the backing file's extended attributes, leaving out any backing copy of the
// user.trowfs. namespace (the served ones are not listed either: docs/state.md).
func (n *Node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	buf := make([]byte, 1024)
	for {
		var sz uint32
		_, _, _, errno := n.onName(func(on *Node) (errno syscall.Errno) {
			sz, errno = on.listxattrBacking(buf)
			return errno
		})
		if errno == syscall.ERANGE && len(buf) < xattrListMax {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		list := withoutTrowfsXattrs(buf[:sz])
		if len(dest) < len(list) {
			return uint32(len(list)), syscall.ERANGE
		}
		return uint32(copy(dest, list)), 0
	}
}

// xattrListMax is XATTR_LIST_MAX, the largest list listxattr(2) returns.
const xattrListMax = 1 << 16

// withoutTrowfsXattrs drops user.trowfs.* from a listxattr(2) list of NUL-terminated names.
func withoutTrowfsXattrs(list []byte) []byte {
	out := list[:0:0]
	for len(list) > 0 {
		i := bytes.IndexByte(list, 0)
		if i < 0 {
			i = len(list) - 1
		}
		name := list[:i+1]
		list = list[i+1:]
		if !isTrowfsXattr(string(name[:len(name)-1])) {
			out = append(out, name...)
		}
	}
	return out
}

func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if isTrowfsXattr(attr) {
		return syscall.EPERM
	}
	on, rel, rok, errno := n.onName(func(on *Node) syscall.Errno { return on.setxattrBacking(attr, data, flags) })
	if errno == 0 && rok {
		on.m.t.Touched(rel) // ctime changed
		on.notifySiblings(rel, false)
		if on != n {
			on.notifySelf(false)
		}
	}
	return errno
}

func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if isTrowfsXattr(attr) {
		return syscall.EPERM
	}
	on, rel, rok, errno := n.onName(func(on *Node) syscall.Errno { return on.removexattrBacking(attr) })
	if errno == 0 && rok {
		on.m.t.Touched(rel)
		on.notifySiblings(rel, false)
		if on != n {
			on.notifySelf(false)
		}
	}
	return errno
}

// OpendirHandle hides DATA/.trowfs from the root's listing and, with ListState, lists .state.
// The kernel may cache the listing across opens (dircache.go).
func (n *Node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	ds, errno := n.dirStream()
	fh, fl := gofs.FileHandle(ds), uint32(dirCacheFlags)
	if errno != 0 || (!n.isRoot() && !n.m.listState) {
		return fh, fl, errno
	}
	d := &hidingDir{inner: fh}
	if n.isRoot() {
		d.hide = tracker.StateDirName
	}
	if n.m.listState {
		d.state = &fuse.DirEntry{Name: tracker.StateFileName, Mode: syscall.S_IFREG, Ino: n.StableAttr().Ino | stateInoBit, Off: stateDirOff}
	}
	return d, fl, 0
}

// Readdir is the handle-less listing (used by some go-fuse paths); it hides the same names.
func (n *Node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ds, errno := n.dirStream()
	if errno != 0 || (!n.isRoot() && !n.m.listState) {
		return ds, errno
	}
	var list []fuse.DirEntry
	for ds.HasNext() {
		e, errno := ds.Next()
		if errno != 0 {
			ds.Close()
			return nil, errno
		}
		if e.Name != tracker.StateDirName {
			list = append(list, e)
		}
	}
	ds.Close()
	if n.m.listState {
		list = append(list, fuse.DirEntry{Name: tracker.StateFileName, Mode: syscall.S_IFREG, Ino: n.StableAttr().Ino | stateInoBit})
	}
	return gofs.NewListDirStream(list), 0
}
