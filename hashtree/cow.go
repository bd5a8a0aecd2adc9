package hashtree

import (
	"io"
	"slices"
)

// # Frozen views
//
// Freeze bumps t.epoch. Every directory (in x.epoch) and name index
// records the epoch it was made in; one of an older epoch may be part of a
// Frozen view and is never changed again. A change copies it first (own,
// ownChild, ownIndex) and links the copy in place of the original, so that
// a change copies the directories from the root down to the entry it
// touches, each at most once per epoch (path copying). Files and symlinks
// need no epoch: they are never changed once linked, a change links a new
// node in place of the old one (relink), which a view may go on reading.
//
// A Frozen view reads only what a snapshot needs: each node's own fields
// and each directory's children in name order (its index, or for a small
// directory the entries of its root leaf). HAMT nodes below a directory's
// root are shared with the live tree, which may change them in place; a
// copied directory whose root is a leaf gets its own copy of that leaf.

// own returns the directory n if it belongs to the current epoch, else a
// copy that does. The caller links the copy where n was.
func (t *Tree) own(n *node) *node {
	if n.x.epoch == t.epoch {
		return n
	}
	c := new(node)
	*c = *n
	x := *n.x
	x.epoch = t.epoch
	cnt := *x.cnt
	x.cnt = &cnt
	if x.root != nil && x.idx == nil {
		// A frozen view lists this directory from its root leaf.
		r := *x.root
		r.ents = slices.Clone(r.ents)
		x.root = &r
	}
	c.x = &x
	return c
}

// ownChild returns the child directory n of the directory x as own does,
// linking a copy into x. find(x, key, n's name, true) must have just found
// n, so that the leaf holding it is the last entry of t.hpath; x must be
// the contents of a directory of the current epoch.
func (t *Tree) ownChild(x *ext, n *node) *node {
	if n.x.epoch == t.epoch {
		return n
	}
	c := t.own(n)
	t.relink(x, n, c)
	return c
}

// relink puts c in place of n, a child of the directory x of the same
// name, under the same conditions as ownChild. n is found by identity, not
// by name: a scan of one leaf and one index chunk touches no other entry.
func (t *Tree) relink(x *ext, n, c *node) {
	leaf := t.hpath[len(t.hpath)-1]
	if i := slices.Index(leaf.ents, n); i >= 0 {
		leaf.ents[i] = c
	}
	if x.idx != nil {
		t.ownIndex(x).replace(n, c)
	}
}

// ownIndex returns x's name index, first replaced by a copy of the current
// epoch if it is older. The copy shares the chunks until they change.
func (t *Tree) ownIndex(x *ext) *index {
	if ix := x.idx; ix.epoch != t.epoch {
		x.idx = &index{chunks: slices.Clone(ix.chunks), heads: slices.Clone(ix.heads), own: make([]bool, len(ix.chunks)), epoch: t.epoch}
	}
	return x.idx
}

// Frozen is a read-only view of a Tree as it was when Freeze returned it.
// Unlike the Tree, it may be used from another goroutine while the Tree
// goes on changing: nothing the Tree does afterwards modifies it.
type Frozen struct {
	root   *node
	digest Digest
	count  int64
}

// Freeze returns a view of t as it is now. It refreshes the digests (as
// Root does) and is otherwise O(1); afterwards each change to t copies the
// path from the root to what it changes, once per directory until the next
// Freeze. Freeze is a call on t like any other (callers serialise it with
// the rest); the view it returns needs no serialising.
func (t *Tree) Freeze() *Frozen {
	d := t.Root()
	f := &Frozen{root: t.root, digest: d, count: t.count}
	t.epoch++
	return f
}

// Root returns the digest of the tree the view shows.
func (f *Frozen) Root() Digest { return f.digest }

// Len returns the number of entries of the view, the root excluded.
func (f *Frozen) Len() int { return int(f.count) }

// WriteSnapshot streams the view and meta to w exactly as the package's
// WriteSnapshot would have streamed the tree when it was frozen.
func (f *Frozen) WriteSnapshot(w io.Writer, meta map[string]string) error {
	return writeSnapshot(w, f.root, f.digest, meta)
}
