package fs

import (
	"context"
	"os"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// StateFunc renders the .state document of the directory rel; changed is the subtree's last
// change (the file's mtime).
type StateFunc func(rel string) (doc []byte, changed time.Time, err error)

// stateNode is the virtual, read-only .state of one directory.
type stateNode struct {
	gofs.Inode
	m   *mountState
	dir *Node
}

var (
	_ = (gofs.NodeGetattrer)((*stateNode)(nil))
	_ = (gofs.NodeOpener)((*stateNode)(nil))
	_ = (gofs.NodeSetattrer)((*stateNode)(nil))
	_ = (gofs.NodeGetxattrer)((*stateNode)(nil))
	_ = (gofs.NodeSetxattrer)((*stateNode)(nil))
)

// stateInoBit marks the inode numbers of .state files (backing inode numbers never use it).
const stateInoBit = 1 << 63

func (m *mountState) stateInode(ctx context.Context, dir *Node, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	sn := &stateNode{m: m, dir: dir}
	doc, changed, err := sn.render()
	if err != nil {
		return nil, syscall.ENOENT
	}
	sn.fill(&out.Attr, len(doc), changed)
	// The document changes with every operation: never let the kernel cache its entry or size.
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	ch := dir.NewInode(ctx, sn, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: dir.StableAttr().Ino | stateInoBit})
	return ch, 0
}

// render is the document of the directory, or an error when the directory has no name any more
// (removed while held: go-fuse gives such an orphan the root's path "", and it must not get the
// root's document).
func (sn *stateNode) render() ([]byte, time.Time, error) {
	rel, ok := sn.dir.relPath()
	if !ok {
		return nil, time.Time{}, os.ErrNotExist
	}
	return sn.m.state(rel)
}

func (sn *stateNode) fill(a *fuse.Attr, size int, changed time.Time) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Size = uint64(size)
	a.Nlink = 1
	a.Ino = sn.dir.StableAttr().Ino | stateInoBit
	if !changed.IsZero() {
		a.SetTimes(nil, &changed, &changed)
	}
}

func (sn *stateNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	doc, changed, err := sn.render()
	if err != nil {
		return syscall.ENOENT
	}
	sn.fill(&out.Attr, len(doc), changed)
	out.SetTimeout(0)
	return 0
}

// Open snapshots the document into the handle, so one read(2) loop sees one consistent JSON.
func (sn *stateNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	if _, ok := sn.dir.relPath(); !ok {
		return nil, 0, syscall.ENOENT
	}
	doc, _, err := sn.render()
	if err != nil {
		return nil, 0, syscall.EIO
	}
	return &stateHandle{doc: doc}, fuse.FOPEN_DIRECT_IO, 0
}

func (sn *stateNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (sn *stateNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENODATA
}

func (sn *stateNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// stateHandle holds the document rendered at open; it is never modified afterwards.
type stateHandle struct {
	doc []byte
}

var _ = (gofs.FileReader)((*stateHandle)(nil))

func (h *stateHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.doc)) {
		return fuse.ReadResultData(nil), 0
	}
	end := off + int64(len(dest))
	if end > int64(len(h.doc)) {
		end = int64(len(h.doc))
	}
	return fuse.ReadResultData(h.doc[off:end]), 0
}

// Extended attributes trowfs serves on every file and directory.
const (
	XattrDigest = "user.trowfs.digest"
	XattrStatus = "user.trowfs.status"
)

func isTrowfsXattr(name string) bool { return strings.HasPrefix(name, "user.trowfs.") }

// xattrOf is the value of attr (XattrDigest or XattrStatus) for the name rel: from the tree only.
// With perName the node has exactly one name, rel; without, the node is the inode and rel is one of
// its names, so the answer is the inode's: its names' common state, or tracker.StatusAmbiguous.
func (m *mountState) xattrOf(rel, attr string, perName bool) ([]byte, bool) {
	query := m.t.InodeState
	if perName {
		query = m.t.NameState
	}
	d, st, ok := query(rel)
	if !ok {
		return nil, false
	}
	if attr == XattrDigest {
		if d == "" {
			return nil, false
		}
		return []byte(d), true
	}
	return []byte(st), true
}
