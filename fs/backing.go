package fs

import (
	"context"
	"github.com/trowfs/trowfs/internal/exactmode"
	"strconv"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/internal/tracker"
)

// How node operations reach their backing objects.
//
// go-fuse's loopback rebuilds an absolute path for every operation. That fails in two ways a
// native filesystem never does:
//
//   - A path longer than PATH_MAX (a deep tree of long names, or a long DATA path) fails with
//     ENAMETOOLONG, although native ext4 accepts the same relative path. Here every operation is a
//     *at() call relative to DATA's descriptor, and when the name relative to DATA is itself too
//     long, relative to its parent directory, reached by tracker.OpenBeneath in steps shorter than
//     PATH_MAX. A path that fits costs no extra system call.
//   - An operation on a node whose name went away through the mount (a rename over it, an unlink)
//     while the kernel still holds it fails with ENOENT: the node has no path any more. Natively
//     an open or stat that resolved the name before the rename opens the old file. So just before
//     an unlink, rmdir or rename through the mount takes a known node's name, the node keeps its
//     object's kernel file handle (Node.keepObject, fs/handle.go), and from then on every
//     operation on the node reaches that object through /proc/self/fd of a descriptor borrowed
//     from the mount's bounded handle cache. Where DATA refuses file handles the node keeps a
//     descriptor of its own instead. Either is dropped when the kernel forgets the node.

// loc names one backing object (or a name in a backing directory) for one *at() call.
type loc struct {
	dir  int    // a directory descriptor, or unix.AT_FDCWD with an absolute name
	name string // relative to dir
	// kept is the descriptor of a node whose name went away (Node.keepObject), -1 for none. Then
	// name is its /proc/self/fd link, to be followed: it leads to the object itself, never to a
	// symlink's target.
	kept     int
	closeDir bool // dir was opened for this call
	// hc and ent, when set, lent kept from the handle cache until release.
	hc  *handleCache
	ent *handleEntry
}

func (l loc) release() {
	if l.closeDir {
		unix.Close(l.dir)
	}
	if l.ent != nil {
		l.hc.release(l.ent)
	}
}

// nofollow is AT_SYMLINK_NOFOLLOW for a name, 0 for a kept descriptor's link, which must be followed.
func (l loc) nofollow() int {
	if l.kept >= 0 {
		return 0
	}
	return unix.AT_SYMLINK_NOFOLLOW
}

// path is the object as one path, for the calls that have no *at() form (xattrs, truncate,
// statfs): the absolute path when it fits, else the directory descriptor's /proc link and the name.
// Only a kept descriptor's link is to be followed (nofollow).
func (l loc) path(m *mountState) string {
	if l.kept >= 0 {
		return l.name
	}
	if l.dir == m.dataFd && len(m.data)+1+len(l.name) < unix.PathMax {
		return m.data + "/" + l.name
	}
	return procFd(l.dir) + "/" + l.name
}

func procFd(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// relMax is the longest name relative to DATA that one call takes: PATH_MAX with its NUL, less
// room for a /proc/self/fd/N/ prefix (loc.path).
const relMax = unix.PathMax - 1 - len("/proc/self/fd/2147483647/")

// locRel is the loc of rel, a path relative to DATA ("" for DATA itself).
func (m *mountState) locRel(rel string) (loc, syscall.Errno) {
	if rel == "" {
		return loc{dir: m.dataFd, name: ".", kept: -1}, 0
	}
	if len(rel) <= relMax {
		return loc{dir: m.dataFd, name: rel, kept: -1}, 0
	}
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return loc{}, syscall.ENAMETOOLONG // one name longer than a path: native says the same
	}
	fd, err := tracker.OpenBeneath(m.dataFd, rel[:i], unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return loc{}, toErrno(err)
	}
	return loc{dir: fd, name: rel[i+1:], kept: -1, closeDir: true}, 0
}

// loc is the node's own backing object: what it kept if it keeps it, else its name.
//
// A file or symlink with neither has lost its name in a way keepObject did not see coming, or
// kept the handle of a file whose descriptor was evicted while it had another link, which then
// went (fs/handle.go): then ESTALE, on which the kernel walks a path again with LOOKUP_REVAL
// (open, stat, chmod, truncate, xattrs: every path-based call retries once), so it finds what
// the name leads to now, as it would natively. A directory that lost its name without keeping
// its object (behind the mount) answers ENOENT, as the loopback does.
func (n *Node) loc() (loc, syscall.Errno) {
	if k := n.kept.Load(); k != nil {
		return k.loc(n.m)
	}
	rel, ok := n.relPath()
	if !ok {
		if n.StableAttr().Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return loc{}, syscall.ESTALE
		}
		return loc{}, syscall.ENOENT
	}
	return n.m.locRel(rel)
}

// childLoc is name in this directory.
func (n *Node) childLoc(name string) (loc, syscall.Errno) {
	rel, ok := n.child(name)
	if !ok {
		return loc{}, syscall.ENOENT
	}
	return n.m.locRel(rel)
}

// withLoc runs op on the node's backing object. If the node started keeping its object while op
// ran on its name (a rename over the name raced it: the name may already lead to the new file),
// op runs again on the kept object, so the node never answers for a file that is not its own.
func (n *Node) withLoc(op func(l loc) syscall.Errno) syscall.Errno {
	l, errno := n.loc()
	if errno != 0 {
		return errno
	}
	errno = op(l)
	l.release()
	if l.kept < 0 && n.kept.Load() != nil {
		if l, errno = n.loc(); errno == 0 {
			errno = op(l)
		}
	}
	return errno
}

// keepObject makes the node keep its backing object (reached by l, its name), just before an
// unlink, rmdir or rename through the mount takes that name away (see above): its file handle,
// or where there is none an O_PATH descriptor. Nothing for a node that keeps its object already,
// or when the name no longer leads to the node's object (changed behind the mount). The caller
// settles what it returns (nil for nothing new) once the unlink or rename has finished.
func (n *Node) keepObject(l loc) *keptObject {
	if n.kept.Load() != nil {
		return nil
	}
	fd, err := unix.Openat(l.dir, l.name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || n.m.ino(uint64(st.Dev), st.Ino) != n.StableAttr().Ino {
		unix.Close(fd)
		return nil
	}
	k := n.m.keptFrom(fd, &st)
	if !n.kept.CompareAndSwap(nil, k) {
		k.settle(n.m)
		k.drop(n.m)
		return nil
	}
	return k
}

var _ = (gofs.NodeOnForgetter)((*Node)(nil))

// OnForget drops what the node kept: the kernel forgot it, so no operation on it follows.
func (n *Node) OnForget() {
	if k := n.kept.Swap(nil); k != nil {
		k.drop(n.m)
	}
}

// ino is go-fuse's loopback inode number of a backing file (its idFromStat): the backing number,
// with the device mixed in for a file on another filesystem than DATA.
func (m *mountState) ino(dev, ino uint64) uint64 {
	swapped := dev<<32 | dev>>32
	rootDev := m.root.Dev<<32 | m.root.Dev>>32
	return swapped ^ rootDev ^ ino
}

// stableAttr is go-fuse's loopback identity of a backing file: its inode number (ino) and a
// generation from its birth time.
func (m *mountState) stableAttr(st *syscall.Stat_t, gen uint64) gofs.StableAttr {
	return gofs.StableAttr{Mode: st.Mode, Ino: m.ino(st.Dev, st.Ino), Gen: gen}
}

// statx fills st from statx(2) of name relative to dir and returns the loopback generation (from
// the birth time; 1 when the filesystem has none).
func statx(dir int, name string, flags int, st *syscall.Stat_t) (uint64, error) {
	var x unix.Statx_t
	err := unix.Statx(dir, name, flags, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &x)
	if err == unix.ENOSYS {
		var s unix.Stat_t
		if err := unix.Fstatat(dir, name, &s, flags); err != nil {
			return 0, err
		}
		*st = syscall.Stat_t{Dev: s.Dev, Ino: s.Ino, Nlink: s.Nlink, Mode: s.Mode, Uid: s.Uid, Gid: s.Gid, Rdev: s.Rdev,
			Size: s.Size, Blksize: s.Blksize, Blocks: s.Blocks, Atim: syscall.Timespec(s.Atim), Mtim: syscall.Timespec(s.Mtim), Ctim: syscall.Timespec(s.Ctim)}
		return 1, nil
	}
	if err != nil {
		return 0, err
	}
	*st = syscall.Stat_t{}
	st.Dev = uint64(unix.Mkdev(x.Dev_major, x.Dev_minor))
	st.Ino = x.Ino
	st.Nlink = uint64(x.Nlink)
	st.Mode = uint32(x.Mode)
	st.Uid, st.Gid = x.Uid, x.Gid
	st.Rdev = uint64(unix.Mkdev(x.Rdev_major, x.Rdev_minor))
	st.Size = int64(x.Size)
	st.Blksize = int64(x.Blksize)
	st.Blocks = int64(x.Blocks)
	ts := func(t unix.StatxTimestamp) syscall.Timespec { return syscall.Timespec{Sec: t.Sec, Nsec: int64(t.Nsec)} }
	st.Atim, st.Mtim, st.Ctim = ts(x.Atime), ts(x.Mtime), ts(x.Ctime)
	if x.Mask&unix.STATX_BTIME == 0 || (x.Btime.Sec == 0 && x.Btime.Nsec == 0) {
		return 1, nil
	}
	return uint64(x.Btime.Sec)*1e9 + uint64(x.Btime.Nsec), nil
}

// newChild is the node of a backing object just found or made in this directory.
func (n *Node) newChild(ctx context.Context, st *syscall.Stat_t, gen uint64) *gofs.Inode {
	return n.NewInode(ctx, n.m.newNode(), n.m.stableAttr(st, gen))
}

// entry stats name in l's directory after it was made, and makes its node; if the stat fails, the
// new object is removed again (as the loopback does).
func (n *Node) entry(ctx context.Context, l loc, rmFlags int, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.m.preserveOwner(ctx, l)
	var st syscall.Stat_t
	gen, err := statx(l.dir, l.name, unix.AT_SYMLINK_NOFOLLOW, &st)
	if err != nil {
		unix.Unlinkat(l.dir, l.name, rmFlags)
		return nil, toErrno(err)
	}
	out.Attr.FromStat(&st)
	return n.newChild(ctx, &st, gen), 0
}

// preserveOwner gives a new object the caller's uid and gid when the daemon runs as root.
func (m *mountState) preserveOwner(ctx context.Context, l loc) {
	if !m.root0 {
		return
	}
	if caller, ok := fuse.FromContext(ctx); ok {
		_ = unix.Fchownat(l.dir, l.name, int(caller.Uid), int(caller.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
}

func (n *Node) lookupBacking(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, errno := n.childLoc(name)
	if errno != 0 {
		return nil, errno
	}
	defer l.release()
	var st syscall.Stat_t
	gen, err := statx(l.dir, l.name, unix.AT_SYMLINK_NOFOLLOW, &st)
	if err != nil {
		return nil, toErrno(err)
	}
	out.Attr.FromStat(&st)
	return n.newChild(ctx, &st, gen), 0
}

func (n *Node) mknodBacking(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, errno := n.childLoc(name)
	if errno != 0 {
		return nil, errno
	}
	defer l.release()
	if err := unix.Mknodat(l.dir, l.name, mode, int(rdev)); err != nil {
		return nil, toErrno(err)
	}
	return n.entry(ctx, l, 0, out)
}

func (n *Node) mkdirBacking(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, errno := n.childLoc(name)
	if errno != 0 {
		return nil, errno
	}
	defer l.release()
	if err := unix.Mkdirat(l.dir, l.name, mode); err != nil {
		return nil, toErrno(err)
	}
	return n.entry(ctx, l, unix.AT_REMOVEDIR, out)
}

func (n *Node) symlinkBacking(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	l, errno := n.childLoc(name)
	if errno != 0 {
		return nil, errno
	}
	defer l.release()
	if err := unix.Symlinkat(target, l.dir, l.name); err != nil {
		return nil, toErrno(err)
	}
	return n.entry(ctx, l, 0, out)
}

// unlinkBacking removes name (a directory with rmdir), keeping the object of its known node first.
func (n *Node) unlinkBacking(name string, flags int) syscall.Errno {
	l, errno := n.childLoc(name)
	if errno != 0 {
		return errno
	}
	defer l.release()
	// Only when the call can succeed on the node's kind (unlink of a directory fails with
	// EISDIR, as os.RemoveAll tries first).
	if ch := n.GetChild(name); ch != nil && (flags == 0) == (ch.StableAttr().Mode&syscall.S_IFMT != syscall.S_IFDIR) {
		if cn, ok := ch.Operations().(*Node); ok {
			defer cn.keepObject(l).settle(n.m)
		}
	}
	return toErrno(unix.Unlinkat(l.dir, l.name, flags))
}

func (n *Node) renameBacking(name string, np *Node, newName string, flags uint32) syscall.Errno {
	from, errno := n.childLoc(name)
	if errno != 0 {
		return errno
	}
	defer from.release()
	to, errno := np.childLoc(newName)
	if errno != 0 {
		return errno
	}
	defer to.release()
	if flags&(renameExchange|renameNoreplace) == 0 {
		// A rename over a known node takes its name: keep its object (unless it is the source's
		// file under another name, which the rename leaves alone).
		if ch := np.GetChild(newName); ch != nil && !sameFile(n.GetChild(name), ch) {
			if cn, ok := ch.Operations().(*Node); ok {
				defer cn.keepObject(to).settle(n.m)
			}
		}
	}
	return toErrno(unix.Renameat2(from.dir, from.name, to.dir, to.name, uint(flags)))
}

// renameNoreplace is RENAME_NOREPLACE from renameat2(2).
const renameNoreplace = 0x1

func (n *Node) createBacking(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	l, errno := n.childLoc(name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer l.release()
	flags &^= syscall.O_APPEND
	fd, err := unix.Openat(l.dir, l.name, int(flags)|unix.O_CREAT|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	if n.m.root0 {
		if caller, ok := fuse.FromContext(ctx); ok {
			_ = unix.Fchown(fd, int(caller.Uid), int(caller.Gid))
		}
	}
	var st syscall.Stat_t
	gen, err := statx(fd, "", unix.AT_EMPTY_PATH, &st)
	if err != nil {
		unix.Close(fd)
		return nil, nil, 0, toErrno(err)
	}
	out.FromStat(&st)
	return n.newChild(ctx, &st, gen), gofs.NewLoopbackFile(fd), 0, 0
}

// linkBacking links the node's file (target) as name in this directory.
func (n *Node) linkBacking(ctx context.Context, target *Node, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if _, parent := target.Parent(); parent == nil && target.kept.Load() == nil {
		// A file made with O_TMPFILE is named only by its descriptor, which LINK does not carry.
		return nil, syscall.EXDEV
	}
	src, errno := target.loc()
	if errno != 0 {
		return nil, errno
	}
	defer src.release()
	dst, errno := n.childLoc(name)
	if errno != 0 {
		return nil, errno
	}
	defer dst.release()
	flags := 0
	if src.kept >= 0 {
		flags = unix.AT_SYMLINK_FOLLOW // the /proc link leads to the file itself
	}
	if err := unix.Linkat(src.dir, src.name, dst.dir, dst.name, flags); err != nil {
		return nil, toErrno(err)
	}
	var st syscall.Stat_t
	gen, err := statx(dst.dir, dst.name, unix.AT_SYMLINK_NOFOLLOW, &st)
	if err != nil {
		unix.Unlinkat(dst.dir, dst.name, 0)
		return nil, toErrno(err)
	}
	out.Attr.FromStat(&st)
	return n.newChild(ctx, &st, gen), 0
}

func (n *Node) openBacking(flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	flags &^= syscall.O_APPEND | fuse.FMODE_EXEC
	fd := -1
	errno := n.withLoc(func(l loc) syscall.Errno {
		if fd >= 0 {
			unix.Close(fd) // opened by a name that a rename raced: reopen the kept object
			fd = -1
		}
		var err error
		if l.kept >= 0 {
			// The /proc link is itself a symlink: an O_NOFOLLOW the caller gave (SQLite does)
			// is for the name it resolved, which the kernel already did.
			fd, err = unix.Open(l.name, int(flags)&^unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		} else {
			fd, err = openNoSymlinks(l.dir, l.name, int(flags))
		}
		return toErrno(err)
	})
	if errno != 0 {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, 0, errno
	}
	return gofs.NewLoopbackFile(fd), 0, 0
}

// openNoSymlinks opens name below dir without following any symlink in it (as the loopback's
// Open: the kernel resolved the symlinks already, a symlink here was put behind the mount).
func openNoSymlinks(dir int, name string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags) | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS}
	for {
		fd, err := unix.Openat2(dir, name, &how)
		switch err {
		case unix.EINTR, unix.EAGAIN:
			continue
		case unix.ENOSYS:
			return unix.Openat(dir, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		return fd, err
	}
}

// dirStream opens the node's directory for listing.
func (n *Node) dirStream() (gofs.DirStream, syscall.Errno) {
	l, errno := n.loc()
	if errno != 0 {
		return nil, errno
	}
	defer l.release()
	fd, err := unix.Openat(l.dir, l.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, toErrno(err)
	}
	return gofs.NewLoopbackDirStreamFd(fd)
}

var (
	_ = (gofs.NodeGetattrer)((*Node)(nil))
	_ = (gofs.NodeReadlinker)((*Node)(nil))
	_ = (gofs.NodeStatfser)((*Node)(nil))
)

// Getattr is the handle's fstat when there is one, else the backing object's.
func (n *Node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if fga, ok := f.(gofs.FileGetattrer); ok && f != nil {
		return fga.Getattr(ctx, out)
	}
	return n.withLoc(func(l loc) syscall.Errno {
		var st syscall.Stat_t
		if _, err := statx(l.dir, l.name, l.nofollow(), &st); err != nil {
			return toErrno(err)
		}
		out.FromStat(&st)
		return 0
	})
}

func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	var target []byte
	errno := n.withLoc(func(l loc) syscall.Errno {
		dir, name := l.dir, l.name
		if l.kept >= 0 {
			dir, name = l.kept, "" // the symlink itself: its /proc link would read as a path
		}
		for size := 256; ; size *= 2 {
			buf := make([]byte, size)
			sz, err := unix.Readlinkat(dir, name, buf)
			if err != nil {
				return toErrno(err)
			}
			if sz < len(buf) {
				target = buf[:sz]
				return 0
			}
		}
	})
	return target, errno
}

func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	l, errno := n.loc()
	if errno != 0 {
		return errno
	}
	defer l.release()
	var s syscall.Statfs_t
	if err := syscall.Statfs(l.path(n.m), &s); err != nil {
		return toErrno(err)
	}
	out.FromStatfsT(&s)
	return 0
}

// setattrBacking is the loopback's Setattr: through the handle when there is one, else on the
// backing object; truncation before times, so an explicit mtime is not clobbered.
func (n *Node) setattrBacking(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if fsa, ok := f.(gofs.FileSetattrer); ok && f != nil {
		if errno := fsa.Setattr(ctx, in, out); errno != 0 {
			return errno
		}
		if fga, ok := f.(gofs.FileGetattrer); ok {
			return fga.Getattr(ctx, out)
		}
		return n.Getattr(ctx, nil, out)
	}
	l, errno := n.loc()
	if errno != 0 {
		return errno
	}
	defer l.release()
	if m, ok := in.GetMode(); ok {
		if err := unix.Fchmodat(l.dir, l.name, m, 0); err != nil {
			return toErrno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		suid, sgid := -1, -1
		if uok {
			suid = int(uid)
		}
		if gok {
			sgid = int(gid)
		}
		if err := unix.Fchownat(l.dir, l.name, suid, sgid, l.nofollow()); err != nil {
			return toErrno(err)
		}
	}
	if sz, ok := in.GetSize(); ok {
		if err := unix.Truncate(l.path(n.m), int64(sz)); err != nil {
			return toErrno(err)
		}
	}
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		var err error
		if aok {
			if ts[0], err = unix.TimeToTimespec(atime); err != nil {
				return toErrno(err)
			}
		}
		if mok {
			if ts[1], err = unix.TimeToTimespec(mtime); err != nil {
				return toErrno(err)
			}
		}
		if err := unix.UtimesNanoAt(l.dir, l.name, ts, l.nofollow()); err != nil {
			return toErrno(err)
		}
	}
	var st syscall.Stat_t
	if _, err := statx(l.dir, l.name, l.nofollow(), &st); err != nil {
		return toErrno(err)
	}
	out.FromStat(&st)
	return 0
}

// The xattr calls have no *at() form: they take loc.path, following it only for a kept object.

func (n *Node) getxattrBacking(attr string, dest []byte) (uint32, syscall.Errno) {
	var sz int
	errno := n.withLoc(func(l loc) syscall.Errno {
		var err error
		if l.kept >= 0 {
			sz, err = unix.Getxattr(l.path(n.m), attr, dest)
		} else {
			sz, err = unix.Lgetxattr(l.path(n.m), attr, dest)
		}
		return toErrno(err)
	})
	return uint32(sz), errno
}

func (n *Node) listxattrBacking(dest []byte) (uint32, syscall.Errno) {
	var sz int
	errno := n.withLoc(func(l loc) syscall.Errno {
		var err error
		if l.kept >= 0 {
			sz, err = unix.Listxattr(l.path(n.m), dest)
		} else {
			sz, err = unix.Llistxattr(l.path(n.m), dest)
		}
		return toErrno(err)
	})
	return uint32(sz), errno
}

func (n *Node) setxattrBacking(attr string, data []byte, flags uint32) syscall.Errno {
	l, errno := n.loc()
	if errno != 0 {
		return errno
	}
	defer l.release()
	if l.kept >= 0 {
		return toErrno(unix.Setxattr(l.path(n.m), attr, data, int(flags)))
	}
	return toErrno(unix.Lsetxattr(l.path(n.m), attr, data, int(flags)))
}

func (n *Node) removexattrBacking(attr string) syscall.Errno {
	l, errno := n.loc()
	if errno != 0 {
		return errno
	}
	defer l.release()
	if l.kept >= 0 {
		return toErrno(unix.Removexattr(l.path(n.m), attr))
	}
	return toErrno(unix.Lremovexattr(l.path(n.m), attr))
}

var (
	_ = (gofs.NodeStatxer)((*Node)(nil))
	_ = (gofs.NodeTmpfiler)((*Node)(nil))
)

// Statx (sent for statx(2) calls that ask for more than the basic fields, such as the birth
// time) is the handle's when there is one, else the backing object's, never following a final
// symlink: the node is the symlink.
func (n *Node) Statx(ctx context.Context, f gofs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	if fsx, ok := f.(gofs.FileStatxer); ok && f != nil {
		return fsx.Statx(ctx, flags, mask, out)
	}
	return n.withLoc(func(l loc) syscall.Errno {
		var x unix.Statx_t
		if err := unix.Statx(l.dir, l.name, int(flags)&statxSyncType|l.nofollow(), int(mask), &x); err != nil {
			return toErrno(err)
		}
		out.FromStatx(&x)
		return 0
	})
}

// Tmpfile makes an unnamed file (O_TMPFILE) in this directory.
func (n *Node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	l, errno := n.loc()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer l.release()
	var fd int
	var err error
	// The kernel applied the caller's umask to mode already (internal/exactmode).
	exactmode.Do(mode, func() {
		fd, err = unix.Openat(l.dir, l.name, int(flags&^syscall.O_APPEND)|unix.O_TMPFILE|unix.O_CLOEXEC, mode)
	})
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	var st syscall.Stat_t
	gen, err := statx(fd, "", unix.AT_EMPTY_PATH, &st)
	if err != nil {
		unix.Close(fd)
		return nil, nil, 0, toErrno(err)
	}
	out.FromStat(&st)
	return n.newChild(ctx, &st, gen), gofs.NewLoopbackFile(fd), 0, 0
}

// statxSyncType is AT_STATX_SYNC_TYPE: the flags of a FUSE STATX request that statx(2) takes.
const statxSyncType = unix.AT_STATX_FORCE_SYNC | unix.AT_STATX_DONT_SYNC
