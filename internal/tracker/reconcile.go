package tracker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/hashtree"
)

// rehash is a file the reconciliation could not trust: it is hashed in the background.
type rehash struct {
	rel string
	st  unix.Stat_t
}

// reconciler brings a tree loaded from a snapshot (or an empty one) in line with DATA in place:
// it merges each directory of DATA with the same directory of the tree, in name order, so
// unchanged entries cost one stat and no tree update, and only differences touch the tree.
//
// The stat calls (most of the time) run on a second goroutine, scanDir, which walks DATA in the
// same pre-order the merge consumes: one dirScan per directory, through a bounded channel.
// walkDisk (rescans, verification) reads the same scan.
type reconciler struct {
	t         *Tracker
	tree      *hashtree.Tree
	racyAfter int64 // files modified after this (unix ns) are rehashed even if their metadata matches
	ts        int64
	report    bool // record changes (there was a snapshot to compare with)

	files    int64
	bytes    int64               // of the regular files counted in files
	links    map[uint64][]string // names of files with more than one link
	todo     []rehash
	shadowed []string
	changes  []Change                   // added and removed entries
	modified map[string]hashtree.Digest // files whose metadata changed, with the snapshot's digest
}

// dirScan is one directory of DATA as scanDir read it: its entries sorted by name, stat'ed.
type dirScan struct {
	rel  string
	ents []scanEnt
	err  error // the directory could not be read
}

type scanEnt struct {
	name   string
	st     unix.Stat_t
	target string // symlinks
	gone   bool   // vanished between readdir and stat
	err    error  // stat failed for another reason
}

func (t *Tracker) reconcile(ctx context.Context, tree *hashtree.Tree, racyAfter int64, report bool) (*reconciler, error) {
	r := &reconciler{t: t, tree: tree, racyAfter: racyAfter, ts: now(), report: report, modified: map[string]hashtree.Digest{},
		links: map[uint64][]string{}}
	fd, err := unix.Openat(t.rootFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	scans := make(chan dirScan, 256)
	go func() {
		defer close(scans)
		scanDir(ctx, fd, "", scans)
	}()
	err = r.dir(ctx, "", scans)
	cancel()
	for range scans { // let the scanner finish and close its descriptors
	}
	return r, err
}

// scanDir reads and stats the directory open as dirFd, sends it, then recurses into its
// subdirectories in name order (the order the merge asks for them). It closes dirFd.
func scanDir(ctx context.Context, dirFd int, rel string, out chan<- dirScan) {
	f := os.NewFile(uintptr(dirFd), rel)
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		out <- dirScan{rel: rel, err: fmt.Errorf("read directory %q: %w", rel, err)}
		return
	}
	sort.Strings(names)
	ents := make([]scanEnt, 0, len(names))
	for _, name := range names {
		if rel == "" && name == StateDirName {
			continue
		}
		e := scanEnt{name: name}
		if err := unix.Fstatat(dirFd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
			e.gone = true
		} else if err != nil {
			e.err = fmt.Errorf("stat %q: %w", joinRel(rel, name), err)
		} else if e.st.Mode&unix.S_IFMT == unix.S_IFLNK {
			buf := make([]byte, 4096)
			if n, err := unix.Readlinkat(dirFd, name, buf); err == nil {
				e.target = string(buf[:n])
			} else {
				e.gone = true
			}
		}
		ents = append(ents, e)
	}
	select {
	case out <- dirScan{rel: rel, ents: ents}:
	case <-ctx.Done():
		f.Close()
		return
	}
	for _, e := range ents {
		if e.gone || e.err != nil || e.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		child := joinRel(rel, e.name)
		cfd, err := unix.Openat(dirFd, e.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			out <- dirScan{rel: child, err: err}
			continue
		}
		scanDir(ctx, cfd, child, out)
		if ctx.Err() != nil {
			break
		}
	}
	f.Close()
}

type treeChild struct {
	name  string
	entry hashtree.Entry
}

// dir merges the next scanned directory (which must be rel) with the tree's.
func (r *reconciler) dir(ctx context.Context, rel string, in <-chan dirScan) error {
	var ds dirScan
	select {
	case d, ok := <-in:
		if !ok {
			return fmt.Errorf("scan of %q ended early", rel)
		}
		ds = d
	case <-ctx.Done():
		return ctx.Err()
	}
	if ds.rel != rel {
		return fmt.Errorf("scan out of step: got %q, want %q", ds.rel, rel)
	}
	if ds.err != nil {
		if changedMeanwhile(ds.err) && rel != "" {
			// Removed, or replaced by a file or a symbolic link, while we walked: a directory no
			// more. What replaced it is seen at its next change or verification.
			if !errors.Is(ds.err, unix.ENOENT) {
				r.t.log.Warn("a directory changed while the mount-time scan read it; not recorded until it changes again or a verification runs", "path", rel, "err", ds.err)
			}
			r.gone(rel, hashtree.KindDir)
			return nil
		}
		return ds.err
	}
	var kids []treeChild
	_ = r.tree.List(rel, "", func(name string, e hashtree.Entry) bool {
		kids = append(kids, treeChild{name, e})
		return true
	})
	ents := ds.ents
	i, j := 0, 0
	for i < len(ents) || j < len(kids) {
		switch {
		case j == len(kids) || (i < len(ents) && ents[i].name < kids[j].name):
			if err := r.disk(ctx, rel, &ents[i], nil, in); err != nil {
				return err
			}
			i++
		case i == len(ents) || kids[j].name < ents[i].name:
			r.gone(joinRel(rel, kids[j].name), kids[j].entry.Kind)
			j++
		default:
			if err := r.disk(ctx, rel, &ents[i], &kids[j].entry, in); err != nil {
				return err
			}
			i++
			j++
		}
	}
	if rel == "" {
		_ = r.tree.Remove(StateDirName, r.ts) // never part of the tree (an old snapshot may have it)
	}
	return nil
}

// gone removes a tree entry that DATA no longer has.
func (r *reconciler) gone(p string, k hashtree.Kind) {
	if _, ok := r.tree.Get(p); !ok {
		return
	}
	_ = r.tree.Remove(p, r.ts)
	if r.report {
		r.changes = append(r.changes, Change{Path: p, Change: "removed", Kind: k.String()})
	}
}

// disk reconciles one entry of DATA with the tree entry prev (nil when the tree lacks it).
func (r *reconciler) disk(ctx context.Context, dir string, de *scanEnt, prev *hashtree.Entry, in <-chan dirScan) error {
	p := joinRel(dir, de.name)
	if de.err != nil {
		return de.err
	}
	if de.gone {
		if prev != nil {
			r.gone(p, prev.Kind)
		}
		return nil
	}
	st := &de.st
	if de.name == StateFileName {
		r.shadowed = append(r.shadowed, p)
	}
	kind := kindOf(st.Mode)
	if kind == 0 {
		r.t.log.Info("not tracking a special file", "path", p, "mode", fmt.Sprintf("%o", st.Mode))
		if prev != nil {
			r.gone(p, prev.Kind)
		}
		return nil
	}
	if prev != nil && prev.Kind != kind {
		r.gone(p, prev.Kind)
		prev = nil
	}
	added := prev == nil
	if added && r.report {
		r.changes = append(r.changes, Change{Path: p, Change: "added", Kind: kind.String()})
	}
	switch kind {
	case hashtree.KindDir:
		if added {
			if err := r.tree.Mkdir(p, r.ts); err != nil {
				return err
			}
		}
		return r.dir(ctx, p, in)
	case hashtree.KindSymlink:
		if added || prev.Target != de.target || prev.Meta != metaOf(st) {
			if !added && prev.Target != de.target && r.report {
				r.changes = append(r.changes, Change{Path: p, Change: "modified", Kind: kind.String()})
			}
			return r.tree.Put(p, hashtree.Entry{Kind: hashtree.KindSymlink, Target: de.target, Status: hashtree.StatusVerified, Meta: metaOf(st), ChangedAt: r.ts})
		}
		return nil
	}
	// A regular file.
	r.files++
	r.bytes += st.Size
	if r.t.onLoad != nil && r.files%256 == 0 {
		r.t.onLoad(r.files, r.bytes, false)
	}
	if st.Nlink > 1 {
		r.links[st.Ino] = append(r.links[st.Ino], p)
	}
	m := metaOf(st)
	if r.t.excl.Match(p) {
		if added || prev.Status != hashtree.StatusExcluded || prev.Meta != m {
			return r.tree.Put(p, hashtree.Entry{Kind: hashtree.KindFile, Status: hashtree.StatusExcluded, Meta: m, ChangedAt: r.ts})
		}
		return nil
	}
	if !added && prev.Meta == m && prev.Status != hashtree.StatusPending && prev.Status != hashtree.StatusExcluded && m.Mtime < r.racyAfter {
		return nil // unchanged: the snapshot's digest and status stand
	}
	e := hashtree.Entry{Kind: hashtree.KindFile, Digest: emptyDigest, Status: hashtree.StatusPending, Meta: m, ChangedAt: r.ts}
	if !added {
		e.Digest, e.ChangedAt = prev.Digest, prev.ChangedAt
		if r.report && prev.Status != hashtree.StatusExcluded {
			r.modified[p] = prev.Digest
		}
	}
	r.todo = append(r.todo, rehash{p, *st})
	return r.tree.Put(p, e)
}

func kindOf(mode uint32) hashtree.Kind {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return hashtree.KindDir
	case unix.S_IFREG:
		return hashtree.KindFile
	case unix.S_IFLNK:
		return hashtree.KindSymlink
	}
	return 0
}
