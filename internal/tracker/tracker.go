package tracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/checker"
	"github.com/trowfs/trowfs/internal/ledger"
	"github.com/trowfs/trowfs/internal/statedir"
)

// StateDirName is trowfs's own directory inside DATA. It is never part of the tree and is hidden by
// the mount.
const StateDirName = statedir.Name

// Options configures a Tracker.
type Options struct {
	// Root is the absolute path of the data directory (DATA).
	Root string
	// Exclude lists globs of volatile paths that are tracked but never hashed (see Matcher).
	Exclude []string
	// BlobDigest names the digest a path must have when the layout stores blobs by digest
	// (nil: no path is a blob path).
	BlobDigest func(rel string) (digest.Digest, bool)
	// Notify, if set, receives every change to the tree in order, from one goroutine, never while
	// the tree lock is held.
	Notify func(Event)
	// HashWorkers is the number of goroutines hashing file content (default: number of CPUs).
	HashWorkers int
	Logger      *slog.Logger
	// OnCommitHash, if set, is called with the duration of every pass of hashing that commits a
	// digest (the last writer's close, a rescan, a load; for a streamed write, the hashing done
	// while it was written), from the hashing goroutine. It must not block.
	OnCommitHash func(time.Duration)
	// OnRunEnd, if set, is called when a verification run or scrub pass ends (done or stopped)
	// with its kind and how long it ran. It must not block.
	OnRunEnd func(kind string, took time.Duration)
	// OnLoadProgress, if set, is called now and then during Load's reconcile of DATA with the
	// files and bytes of regular files seen so far, and once at its end with final set.
	OnLoadProgress func(files, bytes int64, final bool)
}

// Event describes one change of the tree for observers such as the registry model.
type Event struct {
	Path    string
	Removed bool // Path (and everything under it) is gone
	Entry   hashtree.Entry
}

// Tracker keeps a hashtree.Tree in step with the operations that cross the mount.
type Tracker struct {
	root       string
	rootFd     int // O_PATH descriptor of DATA, for openat2(RESOLVE_BENEATH)
	log        *slog.Logger
	excl       *Matcher
	blobDigest func(rel string) (digest.Digest, bool)
	onHash     func(time.Duration)                   // Options.OnCommitHash, or nil
	onRunEnd   func(kind string, took time.Duration) // Options.OnRunEnd, or nil
	onLoad     func(files, bytes int64, final bool)  // Options.OnLoadProgress, or nil
	// behind is SetBehindHook's function, or nil.
	behind atomic.Pointer[func(rel string)]

	jobs    *jobQueue
	notify  *eventQueue
	workers sync.WaitGroup
	runsWG  sync.WaitGroup     // verification runs in progress; Close waits for them
	ctx     context.Context    // cancelled by Close: stops verification runs
	cancel  context.CancelFunc // cancels ctx
	closed  atomic.Bool
	renames atomic.Int64 // renames and unlinks between their syscall and their report (NameOp)
	// renameWaiters counts waitRenames calls asleep on renameDone (a cond on renameMu, which
	// guards nothing else), so the NameOp that brings renames to 0 knows whether to wake them.
	renameWaiters atomic.Int64
	renameMu      sync.Mutex
	renameDone    *sync.Cond
	// ckptHold and ckptTotal are the last checkpoint's lock hold and total time (ns), for bench.
	ckptHold, ckptTotal atomic.Int64
	// ckptMu serialises checkpoints, so that a later one cannot be overwritten by an earlier one.
	ckptMu sync.Mutex
	// ckptHook, when set (tests), is called by WriteSnapshot with "frozen" under mu right after
	// the tree is frozen and with "unlocked" once mu is released, before the encoding.
	ckptHook func(stage string)
	// drainWakes and renameWakes count how often Drain and waitRenames woke up to look again
	// (tests: a wait must wake when the work ends, not at a polling interval).
	drainWakes, renameWakes atomic.Int64
	// retryBackoff is how long a hash whose file kept changing waits before it is tried again
	// (hashRetryBackoff; tests lengthen it).
	retryBackoff time.Duration
	// hashHook, when set (tests), is called by hashFile with the name it is about to read, after
	// its first fstat: a test can change the file under the hash there.
	hashHook func(rel string)

	stats counters

	// sdMu guards sd, DATA/.trowfs opened on first use (StateDir).
	sdMu sync.Mutex
	sd   *statedir.Dir

	// mu guards every field below it. Nothing that reads file content or blocks on I/O other than
	// a single lstat/fstat runs while it is held.
	mu   sync.Mutex
	tree *hashtree.Tree
	// k decides what each operation and hash result does to the tree (package ledger); book is
	// its ledger of files by inode: writers, hash generations, the names of files in flight or
	// with several links. Both live as long as the tracker; tree is k's tree (setTreeLocked).
	k        *ledger.Keeper
	book     *ledger.Ledger
	rescans  []rescan // what k asked to read again from DATA, run by flushRescansLocked
	findings map[findingKey]Finding
	heals    map[string]healNote // paths a heal replaced, until their hash commits (Healed); nil until one
	dirty    bool                // the tree changed since the last checkpoint
	lockFile *os.File            // DATA/.trowfs/lock, held with flock while this tracker owns DATA (nil: not locked)
	busy     int                 // hash jobs queued or running, and hashes backing off
	idle     *sync.Cond          // on mu; Drain sleeps on it (wakeDrainLocked)
	load     LoadReport
	runs     []*Run
	scrub    scrubState

	// retries are the timers of hashes backing off until they requeue them (runJob); nil until one.
	retries map[*time.Timer]struct{}
}

// pending is the tracker's data on a file in flight: the keeper's, with the streaming hash.
type pending = ledger.Pending

// streamOf returns the streaming hash of an in-flight file, nil for none.
func streamOf(p *pending) *streamHash {
	if p == nil {
		return nil
	}
	sh, _ := p.Extra.(*streamHash)
	return sh
}

// pendingOf returns the tracker's data on an in-flight file, nil for none.
func pendingOf(f *ledger.File) *pending { return ledger.PendingOf(f) }

// New creates a tracker for opts.Root with an empty tree; call Load to fill it.
func New(opts Options) (*Tracker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	st, err := os.Stat(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("data directory %s is not a directory", opts.Root)
	}
	m, err := NewMatcher(opts.Exclude)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(opts.Root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open data directory: %w", err)
	}
	t := &Tracker{
		root:       opts.Root,
		rootFd:     fd,
		log:        opts.Logger,
		excl:       m,
		blobDigest: opts.BlobDigest,
		onHash:     opts.OnCommitHash,
		onRunEnd:   opts.OnRunEnd,
		onLoad:     opts.OnLoadProgress,
		tree:       hashtree.New(),
		findings:   map[findingKey]Finding{},
		jobs:       newJobQueue(),
		notify:     newEventQueue(opts.Notify),

		retryBackoff: hashRetryBackoff,
	}
	t.k = ledger.NewKeeper(t.tree, t.rules(), sink{t}, now, t.statMeta)
	t.book = t.k.Book()
	t.idle = sync.NewCond(&t.mu)
	t.renameDone = sync.NewCond(&t.renameMu)
	t.ctx, t.cancel = context.WithCancel(context.Background())
	n := opts.HashWorkers
	if n <= 0 {
		n = runtime.NumCPU()
	}
	for i := 0; i < n; i++ {
		t.workers.Add(1)
		go t.worker()
	}
	return t, nil
}

// Dir returns the data directory.
func (t *Tracker) Dir() string { return t.root }

// Close stops the hash workers (pending jobs are dropped: their files stay pending and are rehashed
// on the next mount) and the notification goroutine.
func (t *Tracker) Close() {
	t.StopRuns()
	t.closed.Store(true)
	t.mu.Lock()
	t.wakeDrainLocked() // Drain gives up once the tracker is closed
	t.mu.Unlock()
	t.stopRetries()
	t.jobs.close()
	t.workers.Wait()
	t.notify.close()
	unix.Close(t.rootFd)
	t.mu.Lock()
	if t.lockFile != nil {
		t.lockFile.Close()
		t.lockFile = nil
	}
	t.mu.Unlock()
	t.sdMu.Lock()
	if t.sd != nil {
		t.sd.Close()
		t.sd = nil
	}
	t.sdMu.Unlock()
}

// StopRuns stops the scrub and every verification run and waits for them, so nothing changes the
// tree behind the final snapshot. Later runs cannot start.
func (t *Tracker) StopRuns() {
	t.cancel()
	t.stopScrub()
	t.runsWG.Wait()
}

// Drain waits until no file has writers or pending hash jobs, or until the timeout passes. It
// reports whether the tree is settled.
//
// It sleeps on t.idle until wakeDrainLocked says the wait may be over (the last hash job ended,
// a file with writers may have lost its last name, writers were abandoned, the tracker closed)
// or the timeout passes; once the tracker is closed it returns at once.
func (t *Tracker) Drain(timeout time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	waitFor(t.idle, timeout, &t.drainWakes, func() bool { return t.settledLocked() || t.closed.Load() })
	return t.settledLocked()
}

// wakeDrainLocked wakes Drain to look again. Call it wherever the wait may have ended: the
// last hash job ends, or a file with writers may have lost its last name (a name forgotten,
// replaced or removed by a repair). Cheap when nobody waits.
func (t *Tracker) wakeDrainLocked() { t.idle.Broadcast() }

// settledLocked reports whether no hash job is queued or running and no file that still has a
// name has a writer.
func (t *Tracker) settledLocked() bool { return t.busy == 0 && t.writersLocked() == 0 }

// SetBehindHook makes fn receive the path of every entry a verification run or scrub finds
// added, changed or removed in DATA without passing through the mount (a drift finding), so a
// mount can drop what the kernel caches of it. fn is called with the tracker lock held: it must
// not block nor call the tracker. It replaces any earlier hook; remove removes fn unless another
// hook replaced it meanwhile.
func (t *Tracker) SetBehindHook(fn func(rel string)) (remove func()) {
	p := &fn
	t.behind.Store(p)
	return func() { t.behind.CompareAndSwap(p, nil) }
}

// changedBehind passes rel to the SetBehindHook function, if any.
func (t *Tracker) changedBehind(rel string) {
	if fn := t.behind.Load(); fn != nil {
		(*fn)(rel)
	}
}

// WaitNotified waits until every event so far has been delivered to Notify.
func (t *Tracker) WaitNotified() { t.notify.wait() }

func (t *Tracker) writersLocked() int {
	n := 0
	// A waiting Drain asks this at every tree change (the sink wakes it): it visits the files
	// with writers only, not every hard-linked file the ledger holds for its names.
	t.book.EachWriter(func(f *ledger.File) {
		// A writer of a file that still has a name (its own, or another hard link's) will
		// change the tree when it closes; one of an unlinked file will not.
		if len(t.namesLocked(f.Ino)) > 0 {
			n++
		}
	})
	return n
}

// WithTree runs fn with the tree locked. fn must not keep the tree or block.
func (t *Tracker) WithTree(fn func(tr *hashtree.Tree)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fn(t.tree)
}

func now() int64 { return time.Now().UnixNano() }

// lstat reads metadata of rel relative to DATA without following a final symlink, at any depth.
func (t *Tracker) lstat(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := lstatBeneath(t.rootFd, rel, &st)
	return st, err
}

func metaOf(st *unix.Stat_t) hashtree.Meta {
	return hashtree.Meta{
		Size:  st.Size,
		Mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		Ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		Ino:   st.Ino,
	}
}

// emptyDigest is the digest of an empty file.
var emptyDigest = ledger.EmptyDigest

// ---- operations reported by the mount -------------------------------------------------------

// NameOp marks a rename or unlink in progress: call it before the syscall and call the returned
// function after reporting the result. A hash that finds its file gone while one is in progress
// waits for the report instead of giving the file up.
func (t *Tracker) NameOp() func() {
	t.renames.Add(1)
	return func() {
		// The last one to end wakes waitRenames; a rename pays only the atomic adds when no
		// hash waits. A waiter counts itself before it reads renames, and this reads the
		// waiters after its decrement, so one of the two sees the other.
		if t.renames.Add(-1) == 0 && t.renameWaiters.Load() > 0 {
			t.renameMu.Lock()
			t.renameDone.Broadcast()
			t.renameMu.Unlock()
		}
	}
}

// renameWaitBound bounds waitRenames: a NameOp whose report never comes must not hold a hash
// worker for ever.
const renameWaitBound = 2 * time.Second

// waitRenames waits (at most renameWaitBound) until no rename or unlink is between its syscall
// and its report.
func (t *Tracker) waitRenames() {
	if t.renames.Load() == 0 {
		return
	}
	t.renameWaiters.Add(1)
	defer t.renameWaiters.Add(-1)
	t.renameMu.Lock()
	defer t.renameMu.Unlock()
	waitFor(t.renameDone, renameWaitBound, &t.renameWakes, func() bool { return t.renames.Load() == 0 })
}

// Session is one open file handle with write access. Close it exactly once, when the handle is
// released.
type Session struct {
	t     *Tracker
	ino   uint64
	nlink uint64 // the file's link count when it was opened (0: unknown)
	once  sync.Once
}

// Links is the file's link count when it was opened (0 when the fstat failed).
func (s *Session) Links() uint64 { return s.nlink }

// OpenWrite records that rel was opened for writing through descriptor fd (already open on the
// backing file). created says the open created the file. The file is pending until its last
// writer closes it; then it is hashed.
//
// rel is "" when the file has no name any more (unlinked between the open and the handler
// asking for its name). A rel that no longer leads to the opened file (unlinked, or replaced,
// and its unlink or rename not reported yet) is treated the same way: the writer is counted
// for the inode, which keeps its other known names pending, but no name is recorded for it.
func (t *Tracker) OpenWrite(rel string, fd int, created bool) *Session {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.internal(rel, "fstat of a file opened for writing", err)
		return &Session{t: t}
	}
	t.stats.op("open_write")
	t.mu.Lock()
	defer t.mu.Unlock()
	// Checked under the lock: an unlink or rename of rel after this lstat reports after us and
	// finds the entry we record; one before it has already changed what lstat sees.
	if rel != "" {
		if cur, err := t.lstat(rel); err != nil || cur.Ino != st.Ino {
			rel = ""
		}
	}
	t.k.OpenWrite(rel, metaOf(&st), created)
	return &Session{t: t, ino: st.Ino, nlink: uint64(st.Nlink)}
}

// Close ends the session; the last writer's close queues the file for hashing.
func (s *Session) Close() {
	if s == nil || s.ino == 0 {
		return
	}
	s.once.Do(func() {
		t := s.t
		t.mu.Lock()
		defer t.mu.Unlock()
		t.k.CloseWrite(s.ino)
	})
}

// Truncated records a truncate through this session's handle (ftruncate): the stream hash, if
// any, no longer describes the file.
func (s *Session) Truncated() {
	if s == nil || s.ino == 0 {
		return
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.t.book.Invalidate(s.ino)
	if sh := streamOf(pendingOf(s.t.book.File(s.ino))); sh != nil {
		sh.invalidate()
	}
}

// Created records a new empty regular file made by mknod(2).
func (t *Tracker) Created(rel string) {
	if rel == "" {
		return
	}
	t.stats.op("mknod")
	t.mu.Lock()
	defer t.mu.Unlock()
	st, err := t.lstat(rel) // under the lock, for the reason OpenWrite gives
	if errors.Is(err, unix.ENOENT) {
		return // unlinked meanwhile
	}
	if err != nil {
		t.internalLocked(rel, "lstat after mknod", err)
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	t.rehashLocked(rel, &st, true)
}

// Wrote feeds bytes written at off to the streaming hasher (daemon write mode only). Writes that
// are not strictly sequential switch the file to a rehash at close.
func (s *Session) Wrote(off int64, data []byte) {
	if s == nil || s.ino == 0 {
		return
	}
	t := s.t
	t.mu.Lock()
	p := pendingOf(t.book.File(s.ino))
	if p == nil {
		t.mu.Unlock()
		return
	}
	sh := streamOf(p)
	if sh == nil {
		sh = newStreamHash()
		p.Extra = sh
	}
	t.mu.Unlock()
	sh.write(off, data)
}

// Truncated records a truncate of rel that did not go through a write session (truncate(2) by path).
func (t *Tracker) Truncated(rel string) {
	if rel == "" {
		return // the root is a directory: nothing was truncated there
	}
	t.stats.op("truncate")
	t.mu.Lock()
	defer t.mu.Unlock()
	// Under the lock, for the reason OpenWrite gives.
	st, err := t.lstat(rel)
	if errors.Is(err, unix.ENOENT) {
		return // unlinked meanwhile: its unlink is reported (or was)
	}
	if err != nil {
		t.internalLocked(rel, "lstat after truncate", err)
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return // replaced meanwhile by something that is not a file: its own operation records it
	}
	if sh := streamOf(pendingOf(t.book.File(st.Ino))); sh != nil {
		sh.invalidate()
	}
	t.k.Truncated(rel, metaOf(&st))
}

// Touched refreshes the metadata of rel after chmod, chown or utimes.
func (t *Tracker) Touched(rel string) {
	st, err := t.lstat(rel)
	if err != nil {
		return
	}
	t.stats.op("setattr")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.k.Touched(rel, metaOf(&st))
}

// Mkdir records a new directory.
func (t *Tracker) Mkdir(rel string) {
	t.stats.op("mkdir")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.k.Mkdir(rel)
	t.flushRescansLocked()
}

// Symlink records a new symbolic link.
func (t *Tracker) Symlink(rel, target string) {
	t.stats.op("symlink")
	st, _ := t.lstat(rel)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.k.Symlink(rel, target, metaOf(&st))
}

// Link records a new hard link newRel to the file at oldRel.
func (t *Tracker) Link(oldRel, newRel string) {
	t.stats.op("link")
	st, err := t.lstat(newRel)
	if err != nil {
		t.internal(newRel, "lstat after link", err)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.k.Link(oldRel, newRel, metaOf(&st))
	t.flushRescansLocked()
}

// Unlink records the removal of a file or symlink.
func (t *Tracker) Unlink(rel string) {
	t.stats.op("unlink")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.k.Unlink(rel)
}

// Rmdir records the removal of an (empty) directory.
func (t *Tracker) Rmdir(rel string) {
	t.stats.op("rmdir")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.k.Rmdir(rel)
}

// removeLocked records that rel (and what lies under it) is gone.
func (t *Tracker) removeLocked(rel string) { t.k.Rmdir(rel) }

// Rename records a successful rename(2)/renameat2(2) from oldRel to newRel. exchange is
// RENAME_EXCHANGE.
func (t *Tracker) Rename(oldRel, newRel string, exchange bool) {
	t.stats.op("rename")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.k.Rename(oldRel, newRel, exchange)
	t.flushRescansLocked()
}

// rehashLocked marks rel pending and queues it for hashing.
func (t *Tracker) rehashLocked(rel string, st *unix.Stat_t, urgent bool) {
	t.k.Rehash(rel, metaOf(st), urgent)
}

// putLocked stores an entry, creating missing parent directories, and tells observers.
func (t *Tracker) putLocked(rel string, e hashtree.Entry) { t.k.Put(rel, e) }

func (t *Tracker) updateLocked(rel string, fn func(*hashtree.Entry)) {
	if err := t.tree.Update(rel, fn); err == nil {
		t.dirty = true
		t.wakeDrainLocked() // rel may now name another inode
	}
}

// walkUnderLocked walks the subtree at rel (rel itself excluded).
func (t *Tracker) walkUnderLocked(rel string, fn func(p string, e hashtree.Entry) error) error {
	return walkSubtree(t.tree, rel, fn)
}

// walkSubtree visits every entry under dir in path order.
func walkSubtree(tr *hashtree.Tree, dir string, fn func(p string, e hashtree.Entry) error) error {
	return ledger.WalkSubtree(tr, dir, fn)
}

// resyncLocked repairs the tree at rel from the backing directory after the tree disagreed with
// an operation the filesystem accepted. The operation itself has already succeeded; this only
// records the problem and rebuilds that part of the tree.
func (t *Tracker) resyncLocked(rel, op string, cause error) {
	t.internalLocked(rel, op+": tree out of step with the data directory, rescanning that path", cause)
	defer t.wakeDrainLocked() // the repair may remove or replace a name of a file with writers
	ts := now()
	st, err := t.lstat(rel)
	if err != nil {
		if _, ok := t.tree.Get(rel); ok {
			_ = t.tree.Remove(rel, ts)
			t.notify.push(Event{Path: rel, Removed: true})
		}
		t.dirty = true
		return
	}
	if rel != "" {
		_ = t.tree.MkdirAll(path.Dir(rel), ts)
	}
	t.scanIntoLocked(rel, &st)
	t.dirty = true
}

// scanIntoLocked records rel (and, for a directory, its content) from disk, queueing files for
// hashing. Used for small repairs only; the initial scan does not hold the lock.
func (t *Tracker) scanIntoLocked(rel string, st *unix.Stat_t) {
	ts := now()
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if e, ok := t.tree.Get(rel); ok && e.Kind != hashtree.KindDir {
			_ = t.tree.Remove(rel, ts)
		}
		_ = t.tree.Mkdir(rel, ts)
		names, err := t.readDirNames(rel)
		if err != nil {
			t.internalLocked(rel, "read directory", err)
			return
		}
		for _, name := range names {
			p := joinRel(rel, name)
			if p == StateDirName {
				continue
			}
			cst, err := t.lstat(p)
			if err == nil {
				t.scanIntoLocked(p, &cst)
			}
		}
	case unix.S_IFREG:
		if t.excl.Match(rel) {
			t.putLocked(rel, hashtree.Entry{Kind: hashtree.KindFile, Status: hashtree.StatusExcluded, Meta: metaOf(st), ChangedAt: ts})
			return
		}
		t.rehashLocked(rel, st, false)
	case unix.S_IFLNK:
		target, _ := t.readlink(rel)
		t.putLocked(rel, hashtree.Entry{Kind: hashtree.KindSymlink, Target: target, Status: hashtree.StatusVerified, Meta: metaOf(st), ChangedAt: ts})
	}
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (t *Tracker) readDirNames(rel string) ([]string, error) {
	fd, err := t.openBeneath(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	return f.Readdirnames(-1)
}

func (t *Tracker) readlink(rel string) (string, error) {
	buf := make([]byte, 4096)
	n, err := readlinkBeneath(t.rootFd, rel, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// openBeneath opens rel relative to DATA, refusing to leave it (symlinks, ".."), at any depth.
func (t *Tracker) openBeneath(rel string, flags int) (int, error) {
	return OpenBeneath(t.rootFd, rel, flags)
}

// internal logs a bookkeeping problem and records it as a finding. It never fails an operation.
// Callers that hold mu call internalLocked instead.
func (t *Tracker) internal(rel, what string, err error) {
	f := t.internalFinding(rel, what, err) // logged before taking the lock
	t.mu.Lock()
	t.addFindingLocked(f)
	t.mu.Unlock()
}

// internalLocked is internal for callers that hold mu: the finding is recorded at once, without
// a goroutine to take the lock later.
func (t *Tracker) internalLocked(rel, what string, err error) {
	t.addFindingLocked(t.internalFinding(rel, what, err))
}

// internalFinding logs and counts a bookkeeping problem and returns its finding.
func (t *Tracker) internalFinding(rel, what string, err error) Finding {
	t.log.Warn("tracker: "+what, "path", rel, "err", err)
	t.stats.internalErrors.Add(1)
	detail := what
	if err != nil {
		detail += ": " + err.Error()
	}
	return Finding{Kind: FindingInternal, Path: rel, Detail: detail}
}

// counters are the tracker's monotonic statistics.
type counters struct {
	ops sync.Map // op name -> *atomic.Int64
	// bytesHashed, filesHashed and hashNanos count the same hashing: every pass over a file's
	// content, at commit (close, rescan, load) and in verification runs and the scrub, so that
	// bytesHashed/hashNanos is the hashing throughput (docs/api.md).
	bytesHashed    atomic.Int64
	filesHashed    atomic.Int64
	hashNanos      atomic.Int64
	internalErrors atomic.Int64
}

// OpNames lists every operation counted in Stats.Ops; each is reported (at 0) from the start.
var OpNames = []string{"open_write", "mknod", "truncate", "setattr", "mkdir", "symlink", "link", "unlink", "rmdir", "rename"}

// countHash records one pass of hashing n bytes that took d.
func (c *counters) countHash(n int64, d time.Duration) {
	c.bytesHashed.Add(n)
	c.filesHashed.Add(1)
	c.hashNanos.Add(int64(d))
}

func (c *counters) op(name string) {
	v, ok := c.ops.Load(name)
	if !ok {
		v, _ = c.ops.LoadOrStore(name, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

// ReadFile reads a small file below DATA (at most limit bytes), refusing paths that leave it.
func (t *Tracker) ReadFile(rel string, limit int64) ([]byte, error) {
	fd, err := t.openBeneath(rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", rel, limit)
	}
	return b, nil
}

// SetClassifier replaces the exclusion globs and the blob-name rule (the layout became known
// after the mount started, e.g. a registry initialised an empty data directory) and applies them
// to every file already in the tree.
func (t *Tracker) SetClassifier(exclude []string, blobDigest func(rel string) (digest.Digest, bool)) error {
	m, err := NewMatcher(exclude)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.excl, t.blobDigest = m, blobDigest
	t.k.SetRules(t.rules())
	var files []string
	_ = t.tree.Walk(func(p string, e hashtree.Entry) error {
		if e.Kind == hashtree.KindFile {
			files = append(files, p)
		}
		return nil
	})
	for _, p := range files {
		t.k.Reclassify(p)
	}
	return nil
}

// AbandonWriters is called once the mount is gone: releases of files still open (through a
// lazily detached mount) will never reach the tracker. Those files stay pending (the snapshot
// says so and the next mount rehashes them), and Drain stops waiting for them.
func (t *Tracker) AbandonWriters() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var open []*ledger.File
	t.book.EachWriter(func(f *ledger.File) { open = append(open, f) })
	for _, f := range open {
		for _, p := range t.namesLocked(f.Ino) {
			t.log.Warn("file still open for writing at unmount; it stays pending and is rehashed at the next mount", "path", p)
		}
		t.book.Settle(f.Ino) // a hash job already queued for it finds it settled and records nothing
	}
	t.wakeDrainLocked() // Drain no longer waits for them
	return len(open)
}

// ---- the keeper's driver ----------------------------------------------------------------------

// rules are the exclusion and blob rules as the keeper takes them.
func (t *Tracker) rules() ledger.Rules {
	r := ledger.Rules{Excluded: t.excl.Match}
	if bd := t.blobDigest; bd != nil {
		r.BlobDigest = bd
	}
	return r
}

// statMeta is the keeper's Stat: one lstat, under the tracker's lock.
func (t *Tracker) statMeta(rel string) (hashtree.Meta, bool) {
	st, err := t.lstat(rel)
	if err != nil {
		return hashtree.Meta{}, false
	}
	return metaOf(&st), true
}

// setTreeLocked gives the tracker, and its keeper, a new tree.
func (t *Tracker) setTreeLocked(tr *hashtree.Tree) {
	t.tree = tr
	t.k.SetTree(tr)
}

// rescan is one Sink.Rescan request.
type rescan struct {
	rel, op string
	cause   error
}

// flushRescansLocked runs the rescans the keeper asked for during the call that just returned.
func (t *Tracker) flushRescansLocked() {
	for len(t.rescans) > 0 {
		r := t.rescans[0]
		t.rescans = t.rescans[1:]
		t.resyncLocked(r.rel, r.op, r.cause)
	}
}

// sink is the tracker as the keeper's Sink. Every method runs with t.mu held.
type sink struct{ t *Tracker }

// Changed, Removed and Dirty also wake Drain: a name may have gone to another inode, or away
// from a file whose writers then no longer keep Drain waiting.
func (s sink) Changed(rel string, e hashtree.Entry) {
	s.t.dirty = true
	s.t.notify.push(Event{Path: rel, Entry: e})
	s.t.wakeDrainLocked()
}

func (s sink) Removed(rel string) {
	s.t.dirty = true
	s.t.notify.push(Event{Path: rel, Removed: true})
	s.t.wakeDrainLocked()
}

func (s sink) Dirty() {
	s.t.dirty = true
	s.t.wakeDrainLocked()
}

func (s sink) Queue(j ledger.Job, urgent bool) { s.t.queueLocked(j, urgent) }

func (s sink) Mismatch(rel string, c checker.NameCheck) { s.t.blobMismatchLocked(rel, c) }

func (s sink) ClearMismatch(rel string) { s.t.clearFindingLocked(FindingMismatch, rel) }

func (s sink) ClearPath(rel string) { s.t.clearFindingsLocked(rel) }

func (s sink) Problem(rel, what string, err error) { s.t.internalLocked(rel, what, err) }

func (s sink) Rescan(rel, op string, cause error) {
	s.t.rescans = append(s.t.rescans, rescan{rel, op, cause})
}
