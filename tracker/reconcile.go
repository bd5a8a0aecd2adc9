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
// it walks each directory of DATA and the same directory of the tree side by side, in name order,
// so unchanged entries cost one stat and no tree update, and only differences touch the tree.
type reconciler struct {
	t         *Tracker
	tree      *hashtree.Tree
	racyAfter int64 // files modified after this (unix ns) are rehashed even if their metadata matches
	ts        int64
	report    bool // record changes (there was a snapshot to compare with)

	files    int64
	links    map[uint64][]string // names of files with more than one link
	todo     []rehash
	shadowed []string
	changes  []Change                   // added and removed entries
	modified map[string]hashtree.Digest // files whose metadata changed, with the snapshot's digest
}

func (t *Tracker) reconcile(ctx context.Context, tree *hashtree.Tree, racyAfter int64, report bool) (*reconciler, error) {
	r := &reconciler{t: t, tree: tree, racyAfter: racyAfter, ts: now(), report: report, modified: map[string]hashtree.Digest{},
		links: map[uint64][]string{}}
	fd, err := unix.Openat(t.rootFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return r, r.dir(ctx, fd, "")
}

type treeChild struct {
	name  string
	entry hashtree.Entry
}

func (r *reconciler) dir(ctx context.Context, dirFd int, rel string) error {
	f := os.NewFile(uintptr(dirFd), rel)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory %q: %w", rel, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sort.Strings(names)
	var kids []treeChild
	_ = r.tree.List(rel, "", func(name string, e hashtree.Entry) bool {
		kids = append(kids, treeChild{name, e})
		return true
	})
	i, j := 0, 0
	for i < len(names) || j < len(kids) {
		switch {
		case j == len(kids) || (i < len(names) && names[i] < kids[j].name):
			if err := r.disk(ctx, dirFd, rel, names[i], nil); err != nil {
				return err
			}
			i++
		case i == len(names) || kids[j].name < names[i]:
			r.gone(joinRel(rel, kids[j].name), kids[j].entry.Kind)
			j++
		default:
			if err := r.disk(ctx, dirFd, rel, names[i], &kids[j].entry); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

// gone removes a tree entry that DATA no longer has.
func (r *reconciler) gone(p string, k hashtree.Kind) {
	_ = r.tree.Remove(p, r.ts)
	if r.report {
		r.changes = append(r.changes, Change{Path: p, Change: "removed", Kind: k.String()})
	}
}

// disk reconciles one name of DATA with the tree entry prev (nil when the tree lacks it).
func (r *reconciler) disk(ctx context.Context, dirFd int, dir, name string, prev *hashtree.Entry) error {
	p := joinRel(dir, name)
	if dir == "" && name == StateDirName {
		if prev != nil {
			_ = r.tree.Remove(p, r.ts) // never part of the tree
		}
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirFd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			if prev != nil {
				r.gone(p, prev.Kind)
			}
			return nil
		}
		return fmt.Errorf("stat %q: %w", p, err)
	}
	if name == StateFileName {
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
		cfd, err := unix.Openat(dirFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("open directory %q: %w", p, err)
		}
		return r.dir(ctx, cfd, p)
	case hashtree.KindSymlink:
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(dirFd, name, buf)
		if err != nil {
			return nil
		}
		target := string(buf[:n])
		if added || prev.Target != target || prev.Meta != metaOf(&st) {
			if !added && prev.Target != target && r.report {
				r.changes = append(r.changes, Change{Path: p, Change: "modified", Kind: kind.String()})
			}
			return r.tree.Put(p, hashtree.Entry{Kind: hashtree.KindSymlink, Target: target, Status: hashtree.StatusVerified, Meta: metaOf(&st), ChangedAt: r.ts})
		}
		return nil
	}
	// A regular file.
	r.files++
	if st.Nlink > 1 {
		r.links[st.Ino] = append(r.links[st.Ino], p)
	}
	m := metaOf(&st)
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
	r.todo = append(r.todo, rehash{p, st})
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
