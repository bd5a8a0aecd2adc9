package tracker

import (
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/checker"
	"github.com/trowfs/trowfs/internal/ledger"
)

// hashRetryBackoff is how long a hash whose file changed under it five times in a row waits
// before it is tried again.
const hashRetryBackoff = 100 * time.Millisecond

// job asks a worker to hash the file with inode ino if its in-flight generation is still gen.
type job = ledger.Job

// jobQueue is an unbounded two-level FIFO: urgent jobs (files just written through the mount)
// go before background ones (the initial scan), so a registry commit is never stuck behind a
// million-file rescan.
type jobQueue struct {
	mu      sync.Mutex // guards the fields below
	cond    *sync.Cond
	urgent  []job
	backlog []job
	closed  bool
}

func newJobQueue() *jobQueue {
	q := &jobQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *jobQueue) push(j job, urgent bool) {
	q.mu.Lock()
	if urgent {
		q.urgent = append(q.urgent, j)
	} else {
		q.backlog = append(q.backlog, j)
	}
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *jobQueue) pop() (job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.urgent) == 0 && len(q.backlog) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return job{}, false
	}
	if len(q.urgent) > 0 {
		j := q.urgent[0]
		q.urgent = q.urgent[1:]
		return j, true
	}
	j := q.backlog[0]
	q.backlog = q.backlog[1:]
	return j, true
}

func (q *jobQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// queueLocked queues a hash of the file for its current generation.
func (t *Tracker) queueLocked(j job, urgent bool) {
	t.busy++
	t.jobs.push(j, urgent)
}

func (t *Tracker) worker() {
	defer t.workers.Done()
	for {
		j, ok := t.jobs.pop()
		if !ok {
			return
		}
		t.runJob(j)
		t.mu.Lock()
		t.busy--
		if t.busy == 0 {
			t.wakeDrainLocked()
		}
		t.mu.Unlock()
	}
}

// hashResult is what hashing one file produced.
type hashResult struct {
	sum    hashtree.Digest
	other  digest.Digest // the blob-name algorithm's digest when it is not sha256
	meta   hashtree.Meta
	stable bool // metadata did not change while hashing
	hashed bool // sum is the content's digest (not only metadata was read)
}

// runJob hashes one file outside the lock and swaps the result in if nothing changed meanwhile.
func (t *Tracker) runJob(j job) {
	for attempt := 0; attempt < 5; attempt++ {
		t.mu.Lock()
		f, ok := t.book.Current(j)
		if !ok {
			t.mu.Unlock()
			return // a newer job, or a writer, owns this file now
		}
		names := t.namesLocked(j.Ino)
		if len(names) == 0 {
			t.book.Settle(j.Ino) // unlinked or overwritten while waiting: nothing left to record
			t.mu.Unlock()
			return
		}
		// The rules for each name, read under the lock (SetClassifier may change them).
		type candidate struct {
			rel      string
			excluded bool
			want     digest.Digest
		}
		cands := make([]candidate, 0, len(names))
		for _, n := range names {
			c := candidate{rel: n, excluded: t.excl.Match(n)}
			if t.blobDigest != nil && !c.excluded {
				c.want, _ = t.blobDigest(n)
			}
			cands = append(cands, c)
		}
		// A name that needs the content goes first: with hard links, one name may be excluded
		// and another not, and go-fuse may report either as the name the file was opened by.
		sort.SliceStable(cands, func(a, b int) bool { return !cands[a].excluded && cands[b].excluded })
		p := pendingOf(f)
		if p == nil {
			p = &pending{}
		}
		stream := streamOf(p)
		noWrite := p.HadDigest
		prevMeta, prevStatus := p.Meta, p.Status
		t.mu.Unlock()

		// Hash through the first name that still leads to the file: another name may be in
		// the middle of an unlink or rename the tracker has not heard of yet.
		var res hashResult
		var err error
		var rel string
		var excluded bool
		var want digest.Digest
		for _, c := range cands {
			rel, excluded, want = c.rel, c.excluded, c.want
			res, err = t.hashFile(rel, j.Ino, excluded, want, stream, noWrite, prevMeta)
			if !errors.Is(err, errGone) {
				break
			}
		}
		if errors.Is(err, errRetry) {
			continue
		}
		t.mu.Lock()
		if _, ok := t.book.Current(j); !ok {
			t.mu.Unlock()
			return
		}
		if errors.Is(err, errGone) {
			if now := t.namesLocked(j.Ino); !sameNames(now, names) {
				t.mu.Unlock()
				continue // renamed or linked while we opened it: try the new names
			}
			if t.renames.Load() > 0 {
				// A rename or unlink has changed DATA and is about to tell the tracker: wait
				// for it, then look again under the new names.
				t.mu.Unlock()
				t.waitRenames()
				continue
			}
			t.book.Settle(j.Ino)
			t.mu.Unlock()
			return
		}
		if err != nil {
			// The file cannot be read (EIO, permissions): keep its last digest, but say it was
			// not verified instead of leaving it pending for ever.
			t.book.Settle(j.Ino)
			if e, ok := t.tree.Get(rel); ok && e.Status == hashtree.StatusPending {
				t.updateLocked(rel, func(x *hashtree.Entry) { x.Status = hashtree.StatusUnverified })
			}
			t.addFindingLocked(Finding{Kind: FindingReadError, Path: rel, Detail: "hash after write: " + err.Error()})
			t.mu.Unlock()
			t.log.Warn("could not hash a file", "path", rel, "err", err)
			return
		}
		paths := t.namesLocked(j.Ino)
		t.book.Settle(j.Ino)
		for _, p := range paths {
			t.recordHashLocked(p, j.Ino, res, noWrite && res.meta == prevMeta, prevStatus)
		}
		t.mu.Unlock()
		return
	}
	// The file kept changing under us without a writer through the mount (an outside writer or a
	// shared mapping): try again later rather than record a digest of moving content. A timer
	// requeues it, so the worker goes on with other files meanwhile. The wait counts as busy, as
	// the job it continues did, so Drain still waits for the file.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return // Close has stopped the timers already: the file stays pending
	}
	t.busy++
	var timer *time.Timer
	timer = time.AfterFunc(t.retryBackoff, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if _, ok := t.retries[timer]; !ok {
			return // Close stopped it
		}
		delete(t.retries, timer)
		if _, ok := t.book.Current(j); ok && !t.closed.Load() {
			t.queueLocked(j, false)
		}
		t.busy--
		if t.busy == 0 {
			t.wakeDrainLocked()
		}
	})
	// Assigned under mu, which the timer's function takes first: it always sees its own timer.
	if t.retries == nil {
		t.retries = map[*time.Timer]struct{}{}
	}
	t.retries[timer] = struct{}{}
}

// stopRetries stops the timers of hashes backing off (Close): their files stay pending and are
// rehashed on the next mount, like the jobs Close drops.
func (t *Tracker) stopRetries() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for timer := range t.retries {
		timer.Stop()
		delete(t.retries, timer)
		t.busy--
	}
}

func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// namesLocked lists the current names of the file with inode ino, sorted: those the ledger knows
// that the tree still gives that inode.
func (t *Tracker) namesLocked(ino uint64) []string { return t.k.Names(ino) }

var (
	errRetry = errors.New("file changed while hashing")
	errGone  = errors.New("file is gone")
)

// recordHashLocked records the hash of inode ino at its name p (see ledger.Keeper.Record).
func (t *Tracker) recordHashLocked(p string, ino uint64, res hashResult, unchanged bool, prevStatus hashtree.Status) {
	t.k.Record(p, ino, ledger.Hashed{Sum: res.sum, Other: res.other, Meta: res.meta, Read: res.hashed}, unchanged, prevStatus)
}

// hashFile reads rel (which must still be inode ino) and hashes it. For an excluded file, or a
// file opened for writing but not written, only the metadata is read. A stream hash that covered
// the whole file is used instead of reading it again.
func (t *Tracker) hashFile(rel string, ino uint64, excluded bool, want digest.Digest, stream *streamHash, noWrite bool, prevMeta hashtree.Meta) (hashResult, error) {
	fd, err := t.openBeneath(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOATIME)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return hashResult{}, errGone
		}
		return hashResult{}, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var before unix.Stat_t
	if err := unix.Fstat(fd, &before); err != nil {
		return hashResult{}, err
	}
	if before.Ino != ino || before.Mode&unix.S_IFMT != unix.S_IFREG {
		return hashResult{}, errGone
	}
	if t.hashHook != nil {
		t.hashHook(rel)
	}
	res := hashResult{meta: metaOf(&before), stable: true}
	if excluded || (noWrite && res.meta == prevMeta) {
		return res, nil
	}
	if stream != nil && (want == "" || want.Algorithm() == digest.SHA256) {
		if sum, ok := stream.sum(before.Size); ok {
			res.sum, res.hashed = sum, true
			t.stats.countHash(before.Size, stream.took())
			t.committedHash(stream.took())
			return res, nil
		}
	}
	start := time.Now()
	sum, other, n, err := sumContent(f, want)
	if err != nil {
		return hashResult{}, err
	}
	var after unix.Stat_t
	if err := unix.Fstat(fd, &after); err != nil {
		return hashResult{}, err
	}
	if metaOf(&after) != res.meta {
		return hashResult{}, errRetry
	}
	took := time.Since(start)
	t.stats.countHash(n, took)
	t.committedHash(took)
	res.sum, res.other, res.hashed = sum, other, true
	return res, nil
}

// sumContent hashes r with sha256, and also with the algorithm of want when a blob name asks
// for another one (sha512), in one pass (checker.Sum).
func sumContent(r io.Reader, want digest.Digest) (hashtree.Digest, digest.Digest, int64, error) {
	s, n, err := checker.Sum(r, want)
	return s.SHA256, s.Other, n, err
}

// streamHash hashes bytes written strictly sequentially from offset 0 (daemon write mode). Any
// other pattern invalidates it and the file is read again at close.
type streamHash struct {
	mu    sync.Mutex // guards the fields below; writes to one file may arrive concurrently
	h     hash.Hash
	next  int64
	valid bool
	spent time.Duration // time spent in h.Write, for the hash_seconds metric
}

func newStreamHash() *streamHash { return &streamHash{h: sha256.New(), valid: true} }

func (s *streamHash) write(off int64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.valid || off != s.next {
		s.valid = false
		return
	}
	start := time.Now()
	s.h.Write(data)
	s.spent += time.Since(start)
	s.next += int64(len(data))
}

// took returns the time spent hashing the stream.
func (s *streamHash) took() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spent
}

func (s *streamHash) invalidate() {
	s.mu.Lock()
	s.valid = false
	s.mu.Unlock()
}

// sum returns the digest if the stream covered exactly size bytes.
func (s *streamHash) sum(size int64) (hashtree.Digest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d hashtree.Digest
	if !s.valid || s.next != size {
		return d, false
	}
	copy(d[:], s.h.Sum(nil))
	return d, true
}

// committedHash reports one pass of hashing at commit to Options.OnCommitHash.
func (t *Tracker) committedHash(d time.Duration) {
	if t.onHash != nil {
		t.onHash(d)
	}
}

// HashPath hashes a file below DATA directly (used by verification).
func (t *Tracker) hashPath(rel string, want digest.Digest) (hashtree.Digest, digest.Digest, hashtree.Meta, error) {
	fd, err := t.openBeneath(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOATIME)
	if err != nil {
		return hashtree.Digest{}, "", hashtree.Meta{}, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return hashtree.Digest{}, "", hashtree.Meta{}, err
	}
	start := time.Now()
	d, od, n, err := sumContent(f, want)
	if err != nil {
		return hashtree.Digest{}, "", hashtree.Meta{}, err
	}
	t.stats.countHash(n, time.Since(start))
	return d, od, metaOf(&st), nil
}
