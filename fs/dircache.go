package fs

import (
	"strings"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Directory listings are cached by the kernel (FOPEN_CACHE_DIR with FOPEN_KEEP_CACHE at opendir):
// a listing is read from the daemon once and served from the directory's page cache after that,
// across opens, until something invalidates it. Every change that passes through the mount
// (create, mknod, mkdir, symlink, link, unlink, rmdir, rename) makes the kernel drop the cache of
// the directories it changed itself (fuse_dir_changed). What the kernel cannot know about is a
// change made in DATA behind the mount: a heal renaming a verified copy over a blob
// (Server.Invalidate), or what a verification run or scrub finds added, changed or removed (the
// tracker's SetBehindHook, wired by Mount). For those trowfs drops the parent directory's cached
// listing, the name's cached entry (positive or negative) and the node's cached pages and attributes.

// dirCacheFlags are the open flags OpendirHandle answers with.
const dirCacheFlags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE

// invalidate drops what the kernel caches of rel (relative to DATA) and of its parent directory's
// listing. It writes to the kernel, which may wait for locks an operation in progress holds: never
// call it while holding a lock such an operation takes (the tracker's), use the queue instead.
func (s *Server) invalidate(rel string) {
	if s.root == nil || rel == "" || s.unmounted.Load() {
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
	// The cached listing has the name (or lacks it) and its inode number.
	_ = parent.NotifyContent(0, 0)
}

// invalQueue hands paths to invalidate to one goroutine at a time, started when the queue
// becomes non-empty and gone when it is drained, so that add never blocks: the tracker calls it
// with its lock held.
type invalQueue struct {
	do      func(rel string)
	mu      sync.Mutex
	idle    *sync.Cond // signalled when the queue is drained
	queue   []string
	queued  map[string]bool // the paths in queue
	running bool
}

func newInvalQueue(do func(rel string)) *invalQueue {
	q := &invalQueue{do: do, queued: map[string]bool{}}
	q.idle = sync.NewCond(&q.mu)
	return q
}

func (q *invalQueue) add(rel string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued[rel] {
		return
	}
	q.queued[rel] = true
	q.queue = append(q.queue, rel)
	if !q.running {
		q.running = true
		go q.drain()
	}
}

func (q *invalQueue) drain() {
	q.mu.Lock()
	for len(q.queue) > 0 {
		batch := q.queue
		q.queue = nil
		clear(q.queued)
		q.mu.Unlock()
		for _, rel := range batch {
			q.do(rel)
		}
		q.mu.Lock()
	}
	q.running = false
	q.idle.Broadcast()
	q.mu.Unlock()
}

// wait returns once every path added so far has been invalidated.
func (q *invalQueue) wait() {
	q.mu.Lock()
	for q.running {
		q.idle.Wait()
	}
	q.mu.Unlock()
}

// Invalidated waits until the kernel has been told of every change behind the mount that the
// tracker reported so far (a verification run's or a scrub's drift findings).
func (s *Server) Invalidated() {
	if s.inval != nil {
		s.inval.wait()
	}
}
