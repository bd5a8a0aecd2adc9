package fs

import (
	"container/list"
	"errors"
	"log/slog"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kernel file handles for nodes whose name went away.
//
// A node whose name an unlink, rmdir or rename through the mount takes while the kernel holds
// it (Node.keepObject) must still reach its own object. Keeping an O_PATH descriptor per such node
// would tie the daemon's descriptors to what the kernel holds, which nothing bounds (a process
// may hold thousands of O_PATH descriptors or working directories; the hard limit here is 20,000
// open files). So the node keeps the object's kernel file handle instead (name_to_handle_at(2),
// a few dozen bytes), and an operation on it borrows a descriptor from a bounded cache that opens
// handles on demand (open_by_handle_at(2) against DATA's descriptor), as virtiofsd's
// --inode-file-handles does.
//
// Handles need CAP_DAC_READ_SEARCH and a filesystem that exports them. Where either is missing
// (probed once at mount, logged once) or one object refuses (another filesystem mounted inside
// DATA), a node keeps a descriptor of its own as before.
//
// A file handle does not keep a file alive: an object whose last link went away lives only
// while something holds it open, and natively an O_PATH descriptor or a working directory does.
// Through the mount such a holder is the kernel's node, not a descriptor of the daemon's, so the
// daemon's descriptor must stay open for as long as the kernel holds the node. The cache
// therefore never evicts the descriptor of an object whose link count is 0 ("pinned"): when an
// idle descriptor comes up for eviction, trim reads its link count (fstat, outside the lock, the
// descriptor lent to trim meanwhile) and pins it instead of closing it. A pinned descriptor is
// off the LRU and outside the bound, and is closed when the last node keeping it is forgotten
// (OnForget), which the kernel sends as soon as nothing holds the node: pinned descriptors are
// as many as the removed objects processes still hold, as natively. A node keeps its object
// just before the unlink or rename (link count still 1), so keepLent lends the entry until that
// call has finished; only then may trim read the count. Linked objects keep the bound.
//
// What remains: a descriptor closed while its object still had another link (a hard link, or a
// link outside the mount) is not reopened when that last link goes by a name the kernel holds no
// node for, or behind the mount; then the object is freed and its node answers ESTALE, on which
// the kernel walks a path again for path-based calls.

// DefaultHandleCache is the number of O_PATH descriptors the handle cache keeps open by default.
const DefaultHandleCache = 1024

// keptObject is what a node whose name went away keeps of its backing object: an entry of the
// mount's handle cache, or (ent nil) a descriptor of its own where handles are refused. Never
// changed after it is published in Node.kept.
type keptObject struct {
	ent *handleEntry
	fd  int
}

// objKey identifies a backing object: its device and inode number, and its file handle's type
// and bytes. On every filesystem whose handles carry an inode generation (ext4, xfs, btrfs,
// tmpfs) the bytes include it, so a new file that reuses a freed inode number is another object.
type objKey struct {
	dev, ino uint64
	handle   string
}

// handleCache keeps at most max descriptors of handles open, least recently used evicted
// first; a descriptor in use by a call is never closed under it (users), so the cache may exceed
// max by the calls in flight, which go-fuse bounds.
type handleCache struct {
	// mountFd is a descriptor of DATA that handles are opened against; not DATA's O_PATH
	// descriptor, which open_by_handle_at refuses (EBADF). mountDir owns it and closes it once
	// the mount's nodes are gone, as mountState.dataDir does.
	mountFd  int
	mountDir *os.File
	dev      uint64 // DATA's device: an object on another filesystem keeps a descriptor instead
	max      int
	// mu guards entries, lru, open, pinned and evicting, and every entry's keepers, users, fd,
	// elem and pinned. It is never held across a system call.
	mu       sync.Mutex
	entries  map[objKey]*handleEntry
	lru      list.List // *handleEntry with an open unpinned fd and no user; most recently used in front
	open     int       // entries whose fd is open and not pinned: at most max, plus those in use
	pinned   int       // entries whose fd is pinned open (their object has no link left)
	evicting int       // of open, those trim is deciding about
}

// handleEntry is one object's handle, shared by every node that keeps it (the per-name nodes of
// a hard-linked file).
type handleEntry struct {
	key     objKey
	fh      unix.FileHandle
	keepers int           // nodes that keep this entry; at 0 it leaves the cache
	users   int           // calls using fd now
	fd      int           // an O_PATH descriptor of the object, -1 when closed
	elem    *list.Element // in lru while fd is open, unpinned and users is 0
	// pinned: the object's last link is gone, so fd is what keeps it alive for the kernel's
	// node; it is never evicted, only closed when the last keeper is forgotten.
	pinned bool
}

// newHandleCache probes whether DATA (dataFd, its O_PATH descriptor) exports file handles this
// process may open; nil with the reason when not.
func newHandleCache(dataFd int, dev uint64, max int) (*handleCache, error) {
	mfd, err := unix.Openat(dataFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	mountDir := os.NewFile(uintptr(mfd), ".")
	h, _, err := unix.NameToHandleAt(dataFd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		mountDir.Close()
		return nil, err
	}
	fd, err := openByHandle(mfd, h)
	if err != nil {
		mountDir.Close()
		return nil, err
	}
	unix.Close(fd)
	if max <= 0 {
		max = DefaultHandleCache
	}
	return &handleCache{mountFd: mfd, mountDir: mountDir, dev: dev, max: max, entries: map[objKey]*handleEntry{}}, nil
}

func openByHandle(mountFd int, h unix.FileHandle) (int, error) {
	for {
		fd, err := unix.OpenByHandleAt(mountFd, h, unix.O_PATH|unix.O_CLOEXEC)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// keep makes the object of fd (an O_PATH descriptor, st its fstat) kept by one more node. It
// takes fd: the cache keeps it as the entry's descriptor (an operation that raced the rename
// follows at once) or closes it. false, and fd left to the caller, when the object has no handle.
func (c *handleCache) keep(fd int, st *unix.Stat_t) (*handleEntry, bool) {
	e, ok := c.keepLent(fd, st)
	if ok {
		c.release(e)
	}
	return e, ok
}

// keepLent is keep with the entry's descriptor lent, as from acquire: a node keeps its object
// just before the unlink or rename that may take its last link, and only once that has finished
// (release) may the cache look at the link count and decide whether it may close the descriptor.
func (c *handleCache) keepLent(fd int, st *unix.Stat_t) (*handleEntry, bool) {
	if st.Dev != c.dev {
		return nil, false
	}
	h, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return nil, false
	}
	key := objKey{dev: st.Dev, ino: st.Ino, handle: string(append([]byte{byte(h.Type()), byte(h.Type() >> 8), byte(h.Type() >> 16), byte(h.Type() >> 24)}, h.Bytes()...))}
	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		e = &handleEntry{key: key, fh: h, fd: -1}
		c.entries[key] = e
	}
	e.keepers++
	if e.fd < 0 {
		e.fd = fd
		fd = -1
		c.open++
	}
	c.useLocked(e)
	c.mu.Unlock()
	if fd >= 0 {
		unix.Close(fd)
	}
	c.trim()
	return e, true
}

// acquire lends the entry's descriptor to one call, opening the handle if it is closed; the
// caller gives it back with release.
func (c *handleCache) acquire(e *handleEntry) (int, syscall.Errno) {
	c.mu.Lock()
	if e.fd >= 0 {
		c.useLocked(e)
		fd := e.fd
		c.mu.Unlock()
		return fd, 0
	}
	c.mu.Unlock()
	fd, err := openByHandle(c.mountFd, e.fh)
	if err != nil {
		return -1, toErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || uint64(st.Dev) != e.key.dev || st.Ino != e.key.ino {
		unix.Close(fd) // the handle leads elsewhere: never answer for another file
		return -1, syscall.ESTALE
	}
	c.mu.Lock()
	var closing []int
	if e.fd >= 0 {
		closing = append(closing, fd) // another call opened it meanwhile
	} else {
		e.fd = fd
		c.open++
	}
	c.useLocked(e)
	fd = e.fd
	c.mu.Unlock()
	closeAll(closing)
	c.trim()
	return fd, 0
}

func (c *handleCache) useLocked(e *handleEntry) {
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
	}
	e.users++
}

// release gives back a descriptor lent by acquire or keep.
func (c *handleCache) release(e *handleEntry) {
	c.mu.Lock()
	fd := c.releaseLocked(e)
	c.mu.Unlock()
	if fd >= 0 {
		unix.Close(fd)
	}
	c.trim()
}

// releaseLocked gives back one use of e's descriptor. The last use of a forgotten entry returns
// its descriptor, to be closed once the lock is released; an idle unpinned one goes back into
// the LRU; a pinned one stays open outside it.
func (c *handleCache) releaseLocked(e *handleEntry) int {
	e.users--
	if e.users > 0 {
		return -1
	}
	if e.keepers == 0 {
		return c.closeLocked(e)
	}
	if !e.pinned {
		e.elem = c.lru.PushFront(e)
	}
	return -1
}

// forget drops one node's keep; the last one closes the descriptor (it may hold an unlinked
// file's space) and removes the entry.
func (c *handleCache) forget(e *handleEntry) {
	c.mu.Lock()
	e.keepers--
	var closing []int
	if e.keepers == 0 {
		delete(c.entries, e.key)
		if e.users == 0 && e.fd >= 0 {
			closing = append(closing, c.closeLocked(e))
		}
	}
	c.mu.Unlock()
	closeAll(closing)
}

// closeLocked takes e's open descriptor out of the cache and returns it, to be closed after
// the lock is released.
func (c *handleCache) closeLocked(e *handleEntry) int {
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
	}
	fd := e.fd
	e.fd = -1
	if e.pinned {
		e.pinned = false
		c.pinned--
	} else {
		c.open--
	}
	return fd
}

// trim closes the least recently used idle descriptors while more than max unpinned ones are
// open. The link count of a candidate is read with fstat outside the lock, while the candidate
// is lent to trim so nothing closes it meanwhile; under the lock again, a candidate whose object
// has no link left is pinned instead of closed: closing the last descriptor of an unlinked file
// frees it, while the kernel may still hold its node (an O_PATH descriptor, a working directory)
// and natively the object would live on. A link count never rises from 0 (linkat refuses such a
// file, O_TMPFILE aside, which keep never sees), so a pinned entry stays pinned until forgotten.
func (c *handleCache) trim() {
	for {
		c.mu.Lock()
		var cands []*handleEntry
		var fds []int // the candidates' descriptors, read under the lock
		for c.open-c.evicting > c.max && c.lru.Len() > 0 {
			e := c.lru.Back().Value.(*handleEntry)
			c.useLocked(e)
			c.evicting++
			cands, fds = append(cands, e), append(fds, e.fd)
		}
		c.mu.Unlock()
		if len(cands) == 0 {
			return
		}
		unlinked := make([]bool, len(cands))
		for i, fd := range fds {
			var st unix.Stat_t
			unlinked[i] = unix.Fstat(fd, &st) == nil && st.Nlink == 0
		}
		var closing []int
		c.mu.Lock()
		for i, e := range cands {
			c.evicting--
			if unlinked[i] && !e.pinned {
				e.pinned = true
				c.open--
				c.pinned++
			}
			if e.users == 1 && e.keepers > 0 && !e.pinned {
				// No call uses it but trim, and the object has a link: close it. One that a
				// call still uses goes back into the LRU when the call is done instead.
				e.users--
				closing = append(closing, c.closeLocked(e))
				continue
			}
			if fd := c.releaseLocked(e); fd >= 0 {
				closing = append(closing, fd)
			}
		}
		c.mu.Unlock()
		closeAll(closing)
	}
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// stats is the number of entries and open descriptors (pinned ones included), for tests.
func (c *handleCache) stats() (entries, open int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.open + c.pinned
}

// pinnedCount is the number of pinned descriptors, for tests.
func (c *handleCache) pinnedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pinned
}

// keptFrom makes what a node keeps of the object of fd (its O_PATH descriptor, st its fstat):
// a handle when the mount has them and the object has one, else fd itself. A handle's
// descriptor comes back lent (handleCache.keepLent): the caller settles it.
func (m *mountState) keptFrom(fd int, st *unix.Stat_t) *keptObject {
	if m.handles != nil {
		if e, ok := m.handles.keepLent(fd, st); ok {
			return &keptObject{ent: e, fd: -1}
		}
		m.handleRefused.Do(func() {
			m.log.Warn("an object under DATA has no file handle (another filesystem mounted inside DATA?): nodes of such objects whose name goes away keep a descriptor each")
		})
	}
	return &keptObject{fd: fd}
}

// drop releases what the node kept, when the kernel forgets it (or a racing keep lost).
func (k *keptObject) drop(m *mountState) {
	if k.ent != nil {
		m.handles.forget(k.ent)
		return
	}
	unix.Close(k.fd)
}

// settle gives back the use that keep lent, once the unlink or rename that took the name has
// finished: from then on the handle cache may look at the object's link count. Nil does nothing.
func (k *keptObject) settle(m *mountState) {
	if k != nil && k.ent != nil {
		m.handles.release(k.ent)
	}
}

// loc is a loc of the kept object, its descriptor lent until l.release.
func (k *keptObject) loc(m *mountState) (loc, syscall.Errno) {
	if k.ent == nil {
		return loc{dir: unix.AT_FDCWD, name: procFd(k.fd), kept: k.fd}, 0
	}
	fd, errno := m.handles.acquire(k.ent)
	if errno != 0 {
		return loc{}, errno
	}
	return loc{dir: unix.AT_FDCWD, name: procFd(fd), kept: fd, hc: m.handles, ent: k.ent}, 0
}

// setupHandles decides, once per mount, whether nodes keep file handles or descriptors.
func (m *mountState) setupHandles(opts Options) {
	m.log = opts.Logger
	if m.log == nil {
		m.log = slog.Default()
	}
	hc, err := (*handleCache)(nil), errors.New("turned off (Options.NoFileHandles)")
	if !opts.NoFileHandles {
		hc, err = newHandleCache(m.dataFd, m.root.Dev, opts.HandleCache)
	}
	if err != nil {
		m.log.Warn("DATA refuses file handles: nodes whose name goes away while the kernel holds them keep a descriptor each, not bounded by the handle cache",
			"data", m.data, "err", err)
		return
	}
	m.handles = hc
}
