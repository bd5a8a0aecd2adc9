package fs

import (
	"context"
	"slices"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/trowfs/trowfs/tracker"
)

// Node is a directory, file or symlink of the mount: a loopback node whose mutations feed the
// tracker.
type Node struct {
	gofs.LoopbackNode
	m *mountState
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
	return n.LoopbackNode.Lookup(ctx, name, out)
}

// Create creates and opens a file; it is pending until its last writer closes it.
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.reserved(name) {
		return nil, nil, 0, syscall.EPERM
	}
	ch, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return ch, fh, fl, errno
	}
	rel, _ := n.child(name) // "" if the directory went away: the file has no name to record
	return ch, n.m.writeHandle(rel, fh, true), fl, 0
}

// Open opens a file; an open for writing (or with O_TRUNC) starts a write session.
func (n *Node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
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
	rel, _ := n.relPath()
	return n.m.writeHandle(rel, fh, false), fl, 0
}

func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	ch, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if p, ok := n.child(name); errno == 0 && ok {
		n.m.t.Mkdir(p)
	}
	return ch, errno
}

func (n *Node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if p, ok := n.child(name); errno == 0 && ok && mode&syscall.S_IFMT == syscall.S_IFREG {
		n.m.t.Created(p)
	}
	return ch, errno
}

func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.reserved(name) {
		return syscall.EPERM
	}
	errno := n.LoopbackNode.Rmdir(ctx, name)
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
	errno := n.LoopbackNode.Unlink(ctx, name)
	if p, ok := n.child(name); errno == 0 && ok {
		n.m.t.Unlink(p)
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
	errno := n.LoopbackNode.Rename(ctx, name, &np.LoopbackNode, newName, flags)
	if errno == 0 && fok && tok {
		n.m.t.Rename(from, to, flags&renameExchange != 0)
	}
	return errno
}

// renameExchange is RENAME_EXCHANGE from renameat2(2).
const renameExchange = 0x2

func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.reserved(name) {
		return nil, syscall.EPERM
	}
	ch, errno := n.LoopbackNode.Symlink(ctx, target, name, out)
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
	oldRel, ook := tn.relPath()
	ch, errno := n.LoopbackNode.Link(ctx, &tn.LoopbackNode, name, out)
	if p, ok := n.child(name); errno == 0 && ok {
		if ook {
			n.m.t.Link(oldRel, p)
		} else {
			n.m.t.Created(p) // the old name went away meanwhile: record the new one from disk
		}
	}
	return ch, errno
}

// Setattr truncates, chmods, chowns and sets times; a size change makes the file pending.
func (n *Node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	errno := n.LoopbackNode.Setattr(ctx, f, in, out)
	if errno != 0 {
		return errno
	}
	if n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return 0
	}
	if _, ok := in.GetSize(); ok {
		if wh, ok := f.(*writeHandle); ok {
			wh.sess.Truncated()
		} else if rel, ok := n.relPath(); ok {
			n.m.t.Truncated(rel)
		}
		return 0
	}
	if rel, ok := n.relPath(); ok {
		n.m.t.Touched(rel)
	}
	return 0
}

// Getxattr serves user.trowfs.digest and user.trowfs.status; everything else is the backing file's.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr != XattrDigest && attr != XattrStatus {
		// The common case, and a hot one: the kernel asks for security.capability before
		// every write. No path lookup for it.
		return n.LoopbackNode.Getxattr(ctx, attr, dest)
	}
	rel := n.rel()
	if rel == "" && !n.isRoot() {
		// Unlinked while open: it has no name, hence no entry in the tree.
		return n.LoopbackNode.Getxattr(ctx, attr, dest)
	}
	if v, ok := n.m.virtualXattr(rel, attr); ok {
		if len(dest) < len(v) {
			return uint32(len(v)), syscall.ERANGE
		}
		return uint32(copy(dest, v)), 0
	}
	return n.LoopbackNode.Getxattr(ctx, attr, dest)
}

func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if isTrowfsXattr(attr) {
		return syscall.EPERM
	}
	errno := n.LoopbackNode.Setxattr(ctx, attr, data, flags)
	if errno == 0 {
		n.m.t.Touched(n.rel()) // ctime changed
	}
	return errno
}

func (n *Node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if isTrowfsXattr(attr) {
		return syscall.EPERM
	}
	errno := n.LoopbackNode.Removexattr(ctx, attr)
	if errno == 0 {
		n.m.t.Touched(n.rel())
	}
	return errno
}

// OpendirHandle hides DATA/.trowfs from the root's listing and, with ListState, lists .state.
func (n *Node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
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
	ds, errno := n.LoopbackNode.Readdir(ctx)
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
