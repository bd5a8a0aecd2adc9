package tracker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/statedir"
)

// Files in DATA/.trowfs.
const (
	SnapshotFile = "tree.snap"
	LockFile     = "lock"
	mountedFile  = "mounted" // present while a mount runs; left behind by a crash
)

// VerifyMode says how a snapshot is checked against the directory at mount.
type VerifyMode string

const (
	VerifyQuick VerifyMode = "quick" // rehash only what changed by size, mtime, ctime or inode
	VerifyFull  VerifyMode = "full"  // quick, then rehash everything in the background (finds bit rot)
	VerifyOff   VerifyMode = "off"   // trust the snapshot as it is (a missing snapshot still means a scan)
)

// InUseError says another trowfs holds the data directory.
type InUseError struct{ Dir string }

func (e *InUseError) Error() string {
	return fmt.Sprintf("data directory %s is in use by another trowfs (lock %s)", e.Dir, filepath.Join(e.Dir, StateDirName, LockFile))
}

// Change is one difference between the snapshot and the directory found at mount.
type Change struct {
	Path   string `json:"path"`
	Change string `json:"change"` // added, removed, modified
	Kind   string `json:"kind"`
}

// LoadReport says what Load found.
type LoadReport struct {
	Snapshot          string    `json:"snapshot"` // loaded, missing, or why it was not used
	SnapshotWrittenAt time.Time `json:"snapshot_written_at,omitzero"`
	PreviousCrashed   bool      `json:"previous_mount_crashed"`
	Mode              string    `json:"verify_on_start"`
	Files             int64     `json:"files"`
	Rehashing         int       `json:"rehashing"`
	Duration          string    `json:"duration"`
	// Changed lists what changed while unmounted (content level, known once rehashing settles).
	Changed        []Change `json:"changed_while_unmounted"`
	ChangedCount   int      `json:"changed_while_unmounted_count"`
	ChangedSettled bool     `json:"changed_while_unmounted_settled"`
}

// maxChanges bounds the list of changes kept for .state; the count stays exact.
const maxChanges = 1000

// Lock takes the data directory for this process (DATA/.trowfs/lock, flock). It fails with
// *InUseError when another trowfs has it, and with *statedir.UnsafeError when DATA/.trowfs is a
// symbolic link, not a directory or another user's.
func (t *Tracker) Lock() error {
	sd, err := t.StateDir()
	if err != nil {
		return err
	}
	f, err := sd.OpenOwned(LockFile)
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return &InUseError{Dir: t.root}
		}
		return fmt.Errorf("lock %s: %w", sd.Path(), err)
	}
	// A directory at the snapshot's or the marker's name would make every write of it fail.
	for _, name := range []string{SnapshotFile, mountedFile} {
		if err := sd.Reclaim(name); err != nil {
			f.Close()
			return err
		}
	}
	// Temporary snapshots of a process that died while writing one: nobody else writes them now.
	if n, err := sd.RemoveTemps(SnapshotFile); n > 0 || err != nil {
		t.log.Info("removed temporary snapshot files left by an earlier mount", "count", n, "err", err)
	}
	// The file stays open until Close: closing it releases the lock.
	t.mu.Lock()
	t.lockFile = f
	t.mu.Unlock()
	return nil
}

// StateDir returns DATA/.trowfs, opened (and created, mode 0700) on first use without following
// links; see package statedir. Everything trowfs keeps in DATA/.trowfs goes through it. It fails
// with *statedir.UnsafeError when the name is a symbolic link, not a directory or another user's.
// The Dir stays open until Close.
func (t *Tracker) StateDir() (*statedir.Dir, error) {
	t.sdMu.Lock()
	defer t.sdMu.Unlock()
	if t.sd == nil {
		sd, err := statedir.OpenAt(t.rootFd, t.root)
		if err != nil {
			return nil, err
		}
		t.sd = sd
	}
	return t.sd, nil
}

// Load fills the tree from the snapshot in DATA/.trowfs (if any) reconciled with the directory
// as mode says. Files whose content must be (re)hashed are queued for the background workers; the
// tree is usable at once, with those files pending.
func (t *Tracker) Load(ctx context.Context, mode VerifyMode) (LoadReport, error) {
	start := time.Now()
	rep := LoadReport{Mode: string(mode)}
	sd, err := t.StateDir()
	if err != nil {
		return rep, err
	}
	if sd.Exists(mountedFile) {
		rep.PreviousCrashed = true
		t.log.Warn("the previous mount of this data directory did not shut down cleanly; reconciling with the last checkpoint")
	}
	old, meta, err := readSnapshot(sd)
	switch {
	case err == nil:
		rep.Snapshot = "loaded"
		if ns, e := strconv.ParseInt(meta["written_at"], 10, 64); e == nil {
			rep.SnapshotWrittenAt = time.Unix(0, ns).UTC()
		}
		t.restoreScrubCursor(meta)
	case errors.Is(err, os.ErrNotExist):
		rep.Snapshot = "missing"
		t.log.Info("no snapshot: scanning and hashing the whole data directory in the background")
	default:
		rep.Snapshot = "unusable: " + err.Error()
		t.log.Warn("snapshot unusable, falling back to a full rescan", "err", err)
		old = nil
	}
	if old != nil && mode == VerifyOff && !rep.PreviousCrashed {
		// Trust the snapshot, except for files it recorded as pending (open or unhashed at
		// unmount): those are hashed now. Hard links are not discovered in this mode.
		t.mu.Lock()
		t.setTreeLocked(old)
		var pending []string
		_ = old.Walk(func(p string, e hashtree.Entry) error {
			if e.Kind == hashtree.KindFile {
				rep.Files++
				if e.Status == hashtree.StatusPending {
					pending = append(pending, p)
				}
			}
			return nil
		})
		for _, p := range pending {
			if st, err := t.lstat(p); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				t.rehashLocked(p, &st, false)
			}
		}
		rep.Rehashing = len(pending)
		rep.ChangedSettled = true
		t.load = rep
		sum, _ := old.Summary("")
		t.mu.Unlock()
		if t.onLoad != nil {
			t.onLoad(rep.Files, sum.Bytes, true)
		}
		t.markMounted()
		return rep, nil
	}

	// Racy entries: changed within this window before the snapshot was written, a later change
	// in the same timestamp tick would be invisible to a metadata comparison.
	racyAfter := rep.SnapshotWrittenAt.Add(-50 * time.Millisecond).UnixNano()
	tree := old
	if tree == nil {
		tree = hashtree.New()
	}
	rc, err := t.reconcile(ctx, tree, racyAfter, old != nil)
	if err != nil {
		return rep, fmt.Errorf("scan %s: %w", t.root, err)
	}
	todo, shadowed := rc.todo, rc.shadowed
	rep.Files = rc.files
	if t.onLoad != nil {
		t.onLoad(rc.files, rc.bytes, true)
	}
	t.mu.Lock()
	t.setTreeLocked(tree)
	t.dirty = true
	for ino, names := range rc.links {
		if len(names) < 2 {
			// Its other names are outside DATA (a hard-link backup beside it): the mount can
			// reach only this one, and a file with one name has nothing for the ledger to keep.
			continue
		}
		for _, n := range names {
			t.book.Bind(n, ino)
		}
	}
	for _, r := range todo {
		t.book.Bind(r.rel, r.st.Ino)
		f, j, _ := t.book.Changed(r.st.Ino)
		f.Aux = &pending{}
		t.queueLocked(j, false)
	}
	for _, p := range shadowed {
		t.addFindingLocked(Finding{Kind: FindingShadowed, Path: p,
			Detail: "a real file named .state exists in DATA; lookups through the mount return the virtual .state, the file itself is untouched and listed by readdir"})
	}
	rep.Rehashing = len(todo)
	rep.Duration = time.Since(start).Round(time.Millisecond).String()
	t.load = rep
	t.mu.Unlock()
	t.log.Info("data directory loaded", "snapshot", rep.Snapshot, "files", rep.Files, "to_hash", rep.Rehashing, "took", rep.Duration)
	t.markMounted()
	if old != nil {
		go t.changesWhenSettled(rc.changes, rc.modified)
	} else {
		t.mu.Lock()
		t.load.ChangedSettled = true
		t.mu.Unlock()
	}
	return rep, nil
}

// changesWhenSettled waits for the load's hashing to finish and records what changed while
// unmounted: entries added and removed, and files whose content (not just metadata) changed.
func (t *Tracker) changesWhenSettled(changes []Change, modified map[string]hashtree.Digest) {
	for !t.Drain(time.Hour) {
		if t.closed.Load() {
			return // Drain returns at once from now on: looping would spin
		}
	}
	t.mu.Lock()
	for p, was := range modified {
		if e, ok := t.tree.Get(p); ok && e.Digest != was {
			changes = append(changes, Change{Path: p, Change: "modified", Kind: e.Kind.String()})
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Path < changes[j].Path })
	count := len(changes)
	if len(changes) > maxChanges {
		changes = changes[:maxChanges]
	}
	t.load.Changed, t.load.ChangedCount, t.load.ChangedSettled = changes, count, true
	t.mu.Unlock()
	if count > 0 {
		t.log.Info("changes made while trowfs was not mounted", "count", count)
		for i, c := range changes {
			if i == 20 {
				t.log.Info("... more changes in .state and /v1/state", "more", count-20)
				break
			}
			t.log.Info("changed while unmounted", "path", c.Path, "change", c.Change)
		}
	}
}

// LoadReport returns what Load found (and, once settled, what changed while unmounted).
func (t *Tracker) LoadReport() LoadReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.load
}

func (t *Tracker) markMounted() {
	sd, err := t.StateDir()
	if err == nil {
		err = sd.WriteFile(mountedFile, []byte(strconv.Itoa(os.Getpid())+"\n"))
	}
	if err != nil {
		t.log.Warn("could not write the mounted marker; a crash of this mount will not be noticed at the next one", "err", err)
	}
}

func readSnapshot(sd *statedir.Dir) (*hashtree.Tree, map[string]string, error) {
	f, err := sd.OpenRead(SnapshotFile)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return hashtree.ReadSnapshot(bufio.NewReaderSize(f, 1<<20))
}

// WriteSnapshot writes the tree atomically to DATA/.trowfs/tree.snap. final marks a clean
// shutdown (and removes the mounted marker).
//
// It holds the lock only to freeze the tree (hashtree.Tree.Freeze: the dirty digests are
// refreshed, the rest is O(1)); the frozen view is encoded and written with the lock released,
// while operations go on changing the tree. The snapshot is the tree at the freeze.
func (t *Tracker) WriteSnapshot(final bool) error {
	t.ckptMu.Lock()
	defer t.ckptMu.Unlock()
	sd, err := t.StateDir()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	start := time.Now()
	var hold time.Duration
	defer func() {
		t.ckptHold.Store(int64(hold))
		t.ckptTotal.Store(int64(time.Since(start)))
	}()
	err = sd.WriteAtomic(SnapshotFile, func(f io.Writer) error {
		w := bufio.NewWriterSize(f, 1<<20)
		t.mu.Lock()
		locked := time.Now()
		meta := map[string]string{
			"written_at": strconv.FormatInt(time.Now().UnixNano(), 10),
			"clean":      strconv.FormatBool(final),
			"root":       t.root,
		}
		t.saveScrubCursorLocked(meta)
		frozen := t.tree.Freeze()
		t.dirty = false // a change from here on is not in this snapshot; a failure sets it again
		if t.ckptHook != nil {
			t.ckptHook("frozen")
		}
		t.mu.Unlock()
		hold = time.Since(locked)
		if t.ckptHook != nil {
			t.ckptHook("unlocked")
		}
		if err := frozen.WriteSnapshot(w, meta); err != nil {
			return err
		}
		return w.Flush()
	})
	if err != nil {
		t.mu.Lock()
		t.dirty = true
		t.mu.Unlock()
		return fmt.Errorf("snapshot: %w", err)
	}
	if final {
		if err := sd.Remove(mountedFile); err != nil {
			t.log.Warn("could not remove the mounted marker", "err", err)
		}
	}
	return nil
}

// CheckpointTimes returns how long the last WriteSnapshot held the tracker's lock (the time every
// reported operation may have waited on it) and how long it took in all.
func (t *Tracker) CheckpointTimes() (hold, total time.Duration) {
	return time.Duration(t.ckptHold.Load()), time.Duration(t.ckptTotal.Load())
}

// Dirty reports whether the tree changed since the last snapshot.
func (t *Tracker) Dirty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dirty
}

// ReadSnapshotFile reads the snapshot of a data directory without mounting and without changing
// anything in it (trowfs verify). A missing snapshot (or DATA/.trowfs) satisfies
// errors.Is(err, os.ErrNotExist); an unsafe DATA/.trowfs is *statedir.UnsafeError.
func ReadSnapshotFile(root string) (*hashtree.Tree, map[string]string, error) {
	sd, err := statedir.OpenReadOnly(root)
	if err != nil {
		return nil, nil, err
	}
	defer sd.Close()
	return readSnapshot(sd)
}

// ReadSnapshotFrom reads the snapshot in an open DATA/.trowfs.
func ReadSnapshotFrom(sd *statedir.Dir) (*hashtree.Tree, map[string]string, error) {
	return readSnapshot(sd)
}
