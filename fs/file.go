package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/trowfs/trowfs/internal/tracker"
)

// writeHandle is a file opened for writing: the backing loopback file plus the tracker session
// that makes the file pending until its last writer is released.
type writeHandle struct {
	*gofs.LoopbackFile
	node        *Node // the name it was opened through
	sess        *tracker.Session
	passthrough bool
	noFlush     bool // the open's reply said FOPEN_NOFLUSH (skipsFlush)
}

var (
	_ = (gofs.FileWriter)((*writeHandle)(nil))
	_ = (gofs.FileReleaser)((*writeHandle)(nil))
	_ = (gofs.FilePassthroughFder)((*writeHandle)(nil))
	_ = (gofs.FileAllocater)((*writeHandle)(nil))
	_ = (gofs.FileFlusher)((*writeHandle)(nil))
	_ = (gofs.FileFsyncer)((*writeHandle)(nil))
)

// writeHandle starts the write session of a file opened for writing through n, and returns the
// handle with the FOPEN_ flags it adds to the open's reply.
func (m *mountState) writeHandle(n *Node, rel string, fh gofs.FileHandle, created bool) (gofs.FileHandle, uint32) {
	lf := fh.(*gofs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	h := &writeHandle{LoopbackFile: lf, node: n, sess: m.t.OpenWrite(rel, fd, created), passthrough: m.passthrough}
	if h.noFlush = h.skipsFlush(); h.noFlush {
		return h, fuse.FOPEN_NOFLUSH
	}
	return h, 0
}

// skipsFlush says whether a write open's reply carries FOPEN_NOFLUSH. With kernel passthrough, it
// spares close(2) its FLUSH round trip, which carries nothing there: writes and shared mappings
// go to the backing file, trowfs forwards no locks (the kernel drops POSIX locks at close itself)
// and the backing descriptor's close happens at RELEASE either way. A file with other names keeps
// its FLUSH: close(2) is where their nodes' cached sizes and pages are dropped (contentChanged),
// so that a stat of another name right after close sees the write, as natively. A name linked
// while the file is open is told at RELEASE, which the kernel sends just after close(2) returns.
// In daemon write mode FLUSH stays: there it writes back dirty pages of a shared mapping.
func (h *writeHandle) skipsFlush() bool {
	return h.passthrough && h.node.m.perName.Load() && h.sess.Links() == 1
}

// Flush runs at every close(2), synchronously, unless the open said FOPEN_NOFLUSH: passthrough
// writes never reach the daemon, so this is where the other names' nodes learn that size and
// times changed.
func (h *writeHandle) Flush(ctx context.Context) syscall.Errno {
	errno := h.LoopbackFile.Flush(ctx)
	h.node.contentChanged()
	return errno
}

func (h *writeHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	errno := h.LoopbackFile.Fsync(ctx, flags)
	h.node.contentChanged()
	return errno
}

// PassthroughFd offers the backing descriptor to the kernel only in passthrough write mode: then
// writes bypass the daemon and the file is hashed from the backing file at its last release.
func (h *writeHandle) PassthroughFd() (int, bool) {
	if !h.passthrough {
		return -1, false
	}
	return h.LoopbackFile.PassthroughFd()
}

// Write is reached in daemon write mode only; it feeds the streaming hash.
func (h *writeHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, errno := h.LoopbackFile.Write(ctx, data, off)
	if errno == 0 {
		h.sess.Wrote(off, data[:n])
	}
	return n, errno
}

// Allocate (fallocate, including hole punching) changes content without a write: the stream
// hash no longer describes the file.
func (h *writeHandle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	errno := h.LoopbackFile.Allocate(ctx, off, size, mode)
	if errno == 0 {
		h.sess.Truncated()
		h.node.contentChanged()
	}
	return errno
}

// Release closes the backing descriptor, then ends the write session (which may queue the hash).
// Without a FLUSH (FOPEN_NOFLUSH) this is also where the other names learn of the writes.
func (h *writeHandle) Release(ctx context.Context) syscall.Errno {
	errno := h.LoopbackFile.Release(ctx)
	if h.noFlush {
		h.node.contentChanged() // before the session ends: a caller waiting for the hash sees it done
	}
	h.sess.Close()
	return errno
}

// readHandle is a read-only file in daemon write mode, where no handle may offer passthrough
// (the kernel refuses to mix passthrough and non-passthrough opens of one inode).
type readHandle struct{ *gofs.LoopbackFile }

func (readHandle) PassthroughFd() (int, bool) { return -1, false }

// hidingDir is a directory handle that leaves one name out of the listing and, with
// --list-state, adds the virtual .state at its end.
type hidingDir struct {
	inner gofs.FileHandle
	hide  string // "" hides nothing
	// state, when non-nil, is the .state entry listed after the backing entries; stateDone says
	// it was returned since the last rewind.
	state     *fuse.DirEntry
	stateDone bool
}

// stateDirOff is the directory offset cookie of the listed .state entry: past any real cookie.
const stateDirOff = 1<<63 - 1

var (
	_ = (gofs.FileReaddirenter)((*hidingDir)(nil))
	_ = (gofs.FileSeekdirer)((*hidingDir)(nil))
	_ = (gofs.FileReleasedirer)((*hidingDir)(nil))
	_ = (gofs.FileFsyncdirer)((*hidingDir)(nil))
)

func (d *hidingDir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	r := d.inner.(gofs.FileReaddirenter)
	for {
		de, errno := r.Readdirent(ctx)
		if errno == 0 && de == nil && d.state != nil && !d.stateDone {
			d.stateDone = true
			e := *d.state
			return &e, 0
		}
		if errno != 0 || de == nil || d.hide == "" || de.Name != d.hide {
			return de, errno
		}
	}
}

func (d *hidingDir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off == stateDirOff {
		d.stateDone = true // continuing after the .state entry: the listing is over
		return 0
	}
	d.stateDone = false
	if s, ok := d.inner.(gofs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *hidingDir) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.inner.(gofs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

func (d *hidingDir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if f, ok := d.inner.(gofs.FileFsyncdirer); ok {
		return f.Fsyncdir(ctx, flags)
	}
	return 0
}
