package tracker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/checker"
)

// ErrBusy says a verification run is already going on.
var ErrBusy = errors.New("a verification run is already running")

// Verification kinds.
const (
	RunFull  = "full"  // rehash every settled file and compare with the tree
	RunQuick = "quick" // compare metadata only; rehash what changed behind the mount's back
	RunScrub = "scrub" // full, throttled and sampled, resuming where the last scrub stopped
)

// Run is one verification run.
type Run struct {
	ID         string
	Kind       string
	StartedAt  time.Time
	FilesTotal int64
	BytesTotal int64
	FilesDone  atomic.Int64
	BytesDone  atomic.Int64
	done       chan struct{}

	mu         sync.Mutex // guards the fields below
	state      string     // running, done, failed
	finishedAt time.Time
	findings   []Finding
	err        string
}

// RunView is a JSON-friendly copy of a Run.
type RunView struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	State      string     `json:"state"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	FilesTotal int64      `json:"files_total"`
	FilesDone  int64      `json:"files_done"`
	BytesTotal int64      `json:"bytes_total"`
	BytesDone  int64      `json:"bytes_done"`
	Findings   []Finding  `json:"findings"`
	Error      string     `json:"error,omitempty"`
}

// View copies the run's current state.
func (r *Run) View() RunView {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := RunView{ID: r.ID, Kind: r.Kind, State: r.state, StartedAt: r.StartedAt, FilesTotal: r.FilesTotal,
		FilesDone: r.FilesDone.Load(), BytesTotal: r.BytesTotal, BytesDone: r.BytesDone.Load(),
		Findings: append([]Finding{}, r.findings...), Error: r.err}
	if !r.finishedAt.IsZero() {
		f := r.finishedAt
		v.FinishedAt = &f
	}
	return v
}

// Wait blocks until the run ends.
func (r *Run) Wait() { <-r.done }

func (r *Run) add(f Finding) {
	r.mu.Lock()
	r.findings = append(r.findings, f)
	r.mu.Unlock()
}

// RunOptions throttle a run.
type RunOptions struct {
	Rate   int64   // bytes per second, 0 = unlimited
	Sample float64 // fraction of files to check (0 or 1 = all)
	From   string  // start after this path (scrub cursor)
	Ctx    context.Context
	// Workers bounds the files checked at once (0: one per CPU, runtime.GOMAXPROCS).
	Workers int
}

type verifyItem struct {
	path  string
	entry hashtree.Entry
}

// StartVerify starts a verification run in the background.
func (t *Tracker) StartVerify(kind string, opts RunOptions) (*Run, error) {
	if kind != RunFull && kind != RunQuick && kind != RunScrub {
		return nil, fmt.Errorf("unknown verification kind %q (want full or quick)", kind)
	}
	if opts.Ctx == nil {
		opts.Ctx = context.Background()
	}
	if t.ctx.Err() != nil {
		return nil, errors.New("the tracker is shutting down")
	}
	t.mu.Lock()
	for _, r := range t.runs {
		if r.View().State == "running" && (kind != RunScrub) == (r.Kind != RunScrub) {
			t.mu.Unlock()
			return nil, ErrBusy
		}
	}
	var items []verifyItem
	var bytes int64
	_ = t.tree.Walk(func(p string, e hashtree.Entry) error {
		if e.Kind != hashtree.KindFile || e.Status == hashtree.StatusPending || e.Status == hashtree.StatusExcluded {
			return nil
		}
		if opts.From != "" && !walkOrderLess(opts.From, p) {
			return nil // checked by the pass the cursor comes from
		}
		if opts.Sample > 0 && opts.Sample < 1 && rand.Float64() >= opts.Sample {
			return nil
		}
		items = append(items, verifyItem{p, e})
		bytes += e.Meta.Size
		return nil
	})
	r := &Run{ID: strconv.FormatInt(time.Now().UnixNano(), 36), Kind: kind, StartedAt: time.Now().UTC(),
		FilesTotal: int64(len(items)), BytesTotal: bytes, done: make(chan struct{}), state: "running"}
	t.runs = append(t.runs, r)
	if len(t.runs) > 20 {
		t.runs = t.runs[len(t.runs)-20:]
	}
	t.mu.Unlock()
	t.runsWG.Add(1)
	t.log.Info("verification started", "id", r.ID, "kind", kind, "files", len(items), "bytes", bytes)
	go func() {
		defer t.runsWG.Done()
		t.verify(r, items, opts)
	}()
	return r, nil
}

// walkOrderLess orders paths as hashtree.Walk visits them: segment by segment, so "a/b" comes
// before "a-c" although '-' sorts before '/'.
func walkOrderLess(a, b string) bool {
	for a != "" && b != "" {
		as, arest, _ := strings.Cut(a, "/")
		bs, brest, _ := strings.Cut(b, "/")
		if as != bs {
			return as < bs
		}
		a, b = arest, brest
	}
	return a == "" && b != ""
}

// Runs returns the runs kept in memory, newest last.
func (t *Tracker) Runs() []*Run {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*Run{}, t.runs...)
}

// RunByID finds a run.
func (t *Tracker) RunByID(id string) (*Run, bool) {
	for _, r := range t.Runs() {
		if r.ID == id {
			return r, true
		}
	}
	return nil, false
}

// runEnded reports a finished run to Options.OnRunEnd.
func (t *Tracker) runEnded(kind string, took time.Duration) {
	if t.onRunEnd != nil {
		t.onRunEnd(kind, took)
	}
}

// verify checks items on a bounded pool of workers (RunOptions.Workers, default one per CPU):
// hashing is what a full run or a scrub spends its time on, and one goroutine leaves every other
// core idle. Each worker takes the next item, checks it (verifyOne takes the tracker lock only
// around bookkeeping, never across the read) and throttles on the run's shared byte count. The
// scrub cursor advances only over a prefix of items that are all done, so a pass stopped midway
// resumes without skipping a file another worker had not finished.
func (t *Tracker) verify(r *Run, items []verifyItem, opts RunOptions) {
	defer close(r.done)
	start := time.Now()
	stopped := func() error {
		if err := opts.Ctx.Err(); err != nil {
			return err
		}
		return t.ctx.Err() // the tracker is closing
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, len(items)))
	var next atomic.Int64
	// cursorMu guards done and low: items[:low] are all checked (scrub cursor).
	var cursorMu sync.Mutex
	var done []bool
	low := 0
	if r.Kind == RunScrub {
		done = make([]bool, len(items))
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for stopped() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(items) {
					return
				}
				it := items[i]
				t.verifyOne(r, it)
				r.FilesDone.Add(1)
				r.BytesDone.Add(it.entry.Meta.Size)
				if r.Kind == RunScrub {
					cursorMu.Lock()
					done[i] = true
					for low < len(done) && done[low] {
						low++
					}
					t.mu.Lock()
					if low > 0 {
						t.scrub.cursor = items[low-1].path
					}
					t.scrub.progress.FilesDone++
					t.scrub.progress.BytesDone += it.entry.Meta.Size
					t.mu.Unlock()
					cursorMu.Unlock()
				}
				if opts.Rate > 0 {
					want := time.Duration(float64(r.BytesDone.Load()) / float64(opts.Rate) * float64(time.Second))
					if d := want - time.Since(start); d > 0 {
						select {
						case <-time.After(d):
						case <-opts.Ctx.Done():
						case <-t.ctx.Done():
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	// Findings in the order the tree walks, as one goroutine would have reported them.
	r.mu.Lock()
	sort.SliceStable(r.findings, func(i, j int) bool { return walkOrderLess(r.findings[i].Path, r.findings[j].Path) })
	r.mu.Unlock()
	if r.FilesDone.Load() < int64(len(items)) {
		err := stopped()
		if err == nil {
			err = errors.New("verification workers ended early")
		}
		r.mu.Lock()
		r.state, r.err, r.finishedAt = "failed", "stopped: "+err.Error(), time.Now().UTC()
		r.mu.Unlock()
		t.runEnded(r.Kind, time.Since(start))
		return
	}
	if r.Kind != RunScrub && stopped() == nil {
		t.findUntracked(r, t.ctx)
	}
	r.mu.Lock()
	r.state, r.finishedAt = "done", time.Now().UTC()
	n := len(r.findings)
	r.mu.Unlock()
	t.runEnded(r.Kind, time.Since(start))
	t.log.Info("verification finished", "id", r.ID, "kind", r.Kind, "files", r.FilesDone.Load(), "findings", n, "took", time.Since(start).Round(time.Millisecond))
}

// verifyOne checks one file against its tree entry.
func (t *Tracker) verifyOne(r *Run, it verifyItem) {
	st, err := t.lstat(it.path)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			t.driftGone(r, it)
		}
		return
	}
	m := metaOf(&st)
	if m != it.entry.Meta {
		t.drift(r, it, &st)
		return
	}
	if r.Kind == RunQuick {
		return
	}
	var want digest.Digest
	t.mu.Lock()
	if t.blobDigest != nil { // SetClassifier may replace it
		want, _ = t.blobDigest(it.path)
	}
	t.mu.Unlock()
	sum, other, m2, err := t.hashPath(it.path, want)
	if err != nil {
		sum, other, m2, err = t.hashPath(it.path, want) // once more before calling it an error
		if err != nil {
			f := Finding{Kind: FindingReadError, Path: it.path, Detail: err.Error(), At: time.Now().UTC()}
			r.add(f)
			t.mu.Lock()
			t.addFindingLocked(f)
			t.mu.Unlock()
			return
		}
	}
	if m2 != it.entry.Meta {
		t.drift(r, it, &st)
		return
	}
	if sum != it.entry.Digest {
		// Re-read once: a disagreement that goes away is a transient read problem, not rot.
		sum2, _, m3, err2 := t.hashPath(it.path, want)
		if err2 == nil && m3 == it.entry.Meta && sum2 == it.entry.Digest {
			f := Finding{Kind: FindingTransientRead, Path: it.path, Expected: it.entry.Digest.String(), Actual: sum.String(),
				Detail: "content disagreed once and matched on the second read", At: time.Now().UTC()}
			r.add(f)
			t.mu.Lock()
			t.addFindingLocked(f)
			t.mu.Unlock()
			return
		}
		f := Finding{Kind: FindingBitRot, Path: it.path, Expected: it.entry.Digest.String(), Actual: sum.String(),
			Detail: "content changed while size, mtime, ctime and inode did not", At: time.Now().UTC()}
		r.add(f)
		t.log.Error("bit rot: content changed without its metadata changing", "path", it.path, "expected", f.Expected, "actual", f.Actual)
		t.mu.Lock()
		t.addFindingLocked(f)
		if t.unchangedLocked(it) {
			t.updateLocked(it.path, func(e *hashtree.Entry) {
				e.Digest, e.Status, e.ChangedAt = sum, hashtree.StatusMismatch, now()
			})
			if e, ok := t.tree.Get(it.path); ok {
				t.notify.push(Event{Path: it.path, Entry: e})
			}
		}
		t.mu.Unlock()
		return
	}
	// Content confirmed.
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.unchangedLocked(it) {
		return
	}
	status := hashtree.StatusVerified
	if want != "" {
		if c := checker.CheckName(want, checker.Sums{SHA256: sum, Other: other}); c.Verdict == checker.Mismatch {
			status = hashtree.StatusMismatch
			f := t.blobMismatchLocked(it.path, c)
			r.add(f)
		}
	}
	ts := now()
	t.updateLocked(it.path, func(e *hashtree.Entry) { e.Status, e.VerifiedAt = status, ts })
}

// BlobNameFinding is the finding of a blob whose content does not match its name (c from
// checker.CheckName with Verdict Mismatch): the mount and `trowfs verify` report the same one.
func BlobNameFinding(rel string, c checker.NameCheck) Finding {
	return Finding{Kind: FindingMismatch, Path: rel, Expected: c.Expected, Actual: c.Actual, Detail: checker.MismatchDetail, At: time.Now().UTC()}
}

// blobMismatchLocked records and logs a blob-name mismatch at rel and returns its finding.
func (t *Tracker) blobMismatchLocked(rel string, c checker.NameCheck) Finding {
	f := BlobNameFinding(rel, c)
	t.addFindingLocked(f)
	t.log.Warn(checker.MismatchDetail, "path", rel, "expected", c.Expected, "actual", c.Actual)
	return f
}

// findUntracked walks DATA for entries the tree does not have: they were created without passing
// through the mount. Each is reported as drift and added to the tree (files are hashed); what
// lies inside a directory added this way is added with it, without a finding of its own. Every
// stat happens outside the tracker lock, which is taken per entry only to compare and record.
func (t *Tracker) findUntracked(r *Run, ctx context.Context) {
	var missing []diskEntry
	err := walkDisk(ctx, t.rootFd, func(d *diskEntry) error {
		t.mu.Lock()
		_, ok := t.tree.Get(d.rel)
		t.mu.Unlock()
		if !ok {
			missing = append(missing, *d)
		}
		return nil
	}, nil)
	if err != nil {
		t.log.Warn("verification: walking the data directory failed", "err", err)
		return
	}
	added := map[string]bool{} // directories this pass added
	for _, d := range missing {
		if ctx.Err() != nil {
			return
		}
		st, err := t.lstat(d.rel)
		if err != nil || st.Ino != d.st.Ino || st.Mode&unix.S_IFMT != d.st.Mode&unix.S_IFMT {
			continue // changed since the walk: seen by the next run
		}
		t.mu.Lock()
		if _, ok := t.tree.Get(d.rel); ok {
			t.mu.Unlock()
			continue // the mount created it meanwhile
		}
		parent := path.Dir(d.rel)
		if !added[parent] {
			f := Finding{Kind: FindingDrift, Path: d.rel, Detail: "added to the data directory without passing through the mount", At: time.Now().UTC()}
			r.add(f)
			t.addFindingLocked(f)
			t.log.Warn("file added behind the mount", "path", d.rel)
			t.changedBehind(d.rel)
			if parent != "." {
				_ = t.tree.MkdirAll(parent, now())
			}
		}
		ts := now()
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := t.tree.Mkdir(d.rel, ts); err == nil {
				t.dirty = true
				added[d.rel] = true
			}
		case unix.S_IFREG:
			if t.excl.Match(d.rel) {
				t.putLocked(d.rel, hashtree.Entry{Kind: hashtree.KindFile, Status: hashtree.StatusExcluded, Meta: metaOf(&st), ChangedAt: ts})
			} else {
				t.rehashLocked(d.rel, &st, false)
			}
		case unix.S_IFLNK: // a link's target never changes while its inode stays
			t.putLocked(d.rel, hashtree.Entry{Kind: hashtree.KindSymlink, Target: d.target, Status: hashtree.StatusVerified, Meta: metaOf(&st), ChangedAt: ts})
		}
		t.mu.Unlock()
	}
}

// unchangedLocked reports whether the tree still holds what the run started from, with no writer.
func (t *Tracker) unchangedLocked(it verifyItem) bool {
	e, ok := t.tree.Get(it.path)
	if !ok || e.Digest != it.entry.Digest || e.Meta != it.entry.Meta {
		return false
	}
	f := t.book.File(e.Meta.Ino)
	return f == nil || !f.InFlight
}

// drift handles a file whose metadata differs from the tree although no operation through the
// mount explains it: it was changed in DATA directly. The tree follows the directory.
func (t *Tracker) drift(r *Run, it verifyItem, st *unix.Stat_t) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.unchangedLocked(it) {
		return // the mount changed it meanwhile: not drift
	}
	f := Finding{Kind: FindingDrift, Path: it.path, Detail: "changed in the data directory without passing through the mount; rehashing", At: time.Now().UTC()}
	r.add(f)
	t.addFindingLocked(f)
	t.log.Warn("file changed behind the mount", "path", it.path)
	t.changedBehind(it.path)
	t.rehashLocked(it.path, st, false)
}

func (t *Tracker) driftGone(r *Run, it verifyItem) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.unchangedLocked(it) {
		return
	}
	f := Finding{Kind: FindingDrift, Path: it.path, Detail: "removed from the data directory without passing through the mount", At: time.Now().UTC()}
	r.add(f)
	t.removeLocked(it.path)
	t.addFindingLocked(f)
	t.changedBehind(it.path)
}

// ---- scrub ----------------------------------------------------------------------------------

// ScrubProgress is the state of the background scrub.
type ScrubProgress struct {
	Enabled    bool      `json:"enabled"`
	Running    bool      `json:"running"`
	Cursor     string    `json:"cursor"`
	FilesDone  int64     `json:"files_done"`
	BytesDone  int64     `json:"bytes_done"`
	Passes     int64     `json:"passes"`
	LastPassAt time.Time `json:"last_pass_at,omitzero"`
	Rate       int64     `json:"rate_bytes_per_second"`
	Sample     float64   `json:"sample"`
}

type scrubState struct {
	cursor   string
	progress ScrubProgress
	cancel   context.CancelFunc
	done     chan struct{}
}

// ScrubOptions configures the background scrub.
type ScrubOptions struct {
	Interval time.Duration // pause between passes
	Rate     int64         // bytes per second
	Sample   float64       // fraction of files per pass
}

// StartScrub runs throttled verification passes in the background until Close. A pass resumes
// after the last file the previous pass (or the previous mount, via the snapshot) checked.
func (t *Tracker) StartScrub(o ScrubOptions) {
	ctx, cancel := context.WithCancel(context.Background())
	t.mu.Lock()
	t.scrub.cancel, t.scrub.done = cancel, make(chan struct{})
	t.scrub.progress.Enabled, t.scrub.progress.Rate, t.scrub.progress.Sample = true, o.Rate, o.Sample
	done := t.scrub.done
	t.mu.Unlock()
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			t.mu.Lock()
			from := t.scrub.cursor
			t.scrub.progress.Running = true
			t.mu.Unlock()
			r, err := t.StartVerify(RunScrub, RunOptions{Rate: o.Rate, Sample: o.Sample, From: from, Ctx: ctx})
			if err == nil {
				r.Wait()
			}
			t.mu.Lock()
			t.scrub.progress.Running = false
			if err == nil && r.View().State == "done" {
				t.scrub.cursor = "" // a full pass: start over next time
				t.scrub.progress.Passes++
				t.scrub.progress.LastPassAt = time.Now().UTC()
			}
			t.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(o.Interval):
			}
		}
	}()
}

func (t *Tracker) stopScrub() {
	t.mu.Lock()
	cancel, done := t.scrub.cancel, t.scrub.done
	t.scrub.cancel = nil
	t.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (t *Tracker) saveScrubCursorLocked(meta map[string]string) {
	meta["scrub_cursor"] = t.scrub.cursor
	t.scrub.progress.Cursor = t.scrub.cursor
}

func (t *Tracker) restoreScrubCursor(meta map[string]string) {
	t.mu.Lock()
	t.scrub.cursor = meta["scrub_cursor"]
	t.scrub.progress.Cursor = t.scrub.cursor
	t.mu.Unlock()
}
