package hashtree

import (
	"slices"
	"strings"
)

// node is one entry of the tree. Files, symlinks and directories share the
// type so that a HAMT bucket is a plain slice of pointers; kind-specific data
// sits behind x. Keep it small: a million of these live in one directory.
type node struct {
	name       string
	digest     Digest // file: content; symlink: symlinkDigest; dir: cached subtree digest (valid when x.root is clean)
	meta       Meta
	changedAt  int64
	verifiedAt int64
	x          *ext // symlink target or directory contents; nil for files
	kind       Kind
	status     Status
}

// ext holds what only symlinks and directories need.
type ext struct {
	target string // KindSymlink

	// KindDir:
	root  *hnode // the HAMT of the children; never nil for a directory
	idx   *index // the children in name order; nil while root is a leaf (its bucket is already sorted)
	total int64  // entries in the subtree, the directory itself excluded
}

func newDir(name string, changedAt int64) *node {
	return &node{name: name, kind: KindDir, changedAt: changedAt, x: &ext{root: &hnode{dirty: true}}}
}

// contributes reports whether the entry enters its directory's digest.
func (n *node) contributes() bool { return !(n.kind == KindFile && n.status == StatusExcluded) }

// size is the number of entries n accounts for (itself and its subtree).
func (n *node) size() int64 {
	if n.kind == KindDir {
		return 1 + n.x.total
	}
	return 1
}

// entry converts n to the exported form; a directory must be refreshed.
func (n *node) entry() Entry {
	e := Entry{Kind: n.kind, Digest: n.digest, Status: n.status, Meta: n.meta, ChangedAt: n.changedAt, VerifiedAt: n.verifiedAt}
	if n.kind == KindSymlink {
		e.Target = n.x.target
	}
	return e
}

// agg is the cached aggregate of a HAMT node (all entries below it,
// recursively through subdirectories).
type agg struct {
	files, dirs, symlinks, bytes int64
	byStatus                     [NumStatus]int64
	changedAt                    int64
	verifiedAt                   int64 // see Summary.VerifiedAt
}

func (a *agg) mergeVerified(files, v int64) {
	switch {
	case files == 0:
	case a.files == 0:
		a.verifiedAt = v
	case a.verifiedAt == 0 || v == 0:
		a.verifiedAt = 0
	default:
		a.verifiedAt = min(a.verifiedAt, v)
	}
}

func (a *agg) merge(b *agg) {
	a.mergeVerified(b.files, b.verifiedAt)
	a.files += b.files
	a.dirs += b.dirs
	a.symlinks += b.symlinks
	a.bytes += b.bytes
	for i := range a.byStatus {
		a.byStatus[i] += b.byStatus[i]
	}
	a.changedAt = max(a.changedAt, b.changedAt)
}

// add adds one entry; a directory entry must be refreshed.
func (a *agg) add(n *node) {
	switch n.kind {
	case KindFile:
		a.mergeVerified(1, n.verifiedAt)
		a.files++
		a.bytes += n.meta.Size
		a.byStatus[n.status]++
	case KindSymlink:
		a.symlinks++
	case KindDir:
		a.merge(&n.x.root.agg)
		a.dirs++
	}
	a.changedAt = max(a.changedAt, n.changedAt)
}

func (a *agg) summary(d Digest) Summary {
	return Summary{Digest: d, Files: a.files, Dirs: a.dirs, Symlinks: a.symlinks, Bytes: a.bytes,
		ByStatus: a.byStatus, ChangedAt: a.changedAt, VerifiedAt: a.verifiedAt}
}

func byName(a, b *node) int { return strings.Compare(a.name, b.name) }

// searchName returns the index of name in the sorted ents, and whether it is there.
func searchName(ents []*node, name string) (int, bool) {
	return slices.BinarySearchFunc(ents, name, func(e *node, s string) int { return strings.Compare(e.name, s) })
}
