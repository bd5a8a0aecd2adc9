package hashtree

import (
	"errors"
	"strings"
)

// Tree is the Merkle tree of one directory hierarchy. Create it with New.
// It is not safe for concurrent use: callers serialise all calls.
type Tree struct {
	root  *node    // the root directory, name ""
	count int64    // entries, the root excluded
	hs    *hasher  // scratch for hashing; used by every method, hence no concurrency
	chain []*node  // scratch: the directories from the root to the last resolved parent
	hpath []*hnode // scratch: the HAMT nodes from the root down to the entry being changed
	epoch uint32   // bumped by Freeze; directories and indexes of older epochs are copied before a change
	// touched receives what touch returns, so that its loads are not
	// compiled away; it means nothing.
	touched uint8
}

// New returns an empty tree (just the root directory).
func New() *Tree { return &Tree{root: newDir("", 0), hs: newHasher()} }

func pathErr(op, p string, err error) error { return &PathError{Op: op, Path: p, Err: err} }

// parentOf resolves the directory that holds p (p != ""), leaving the
// directories from the root down to it in t.chain. With mark set, the HAMT
// nodes on the way are marked dirty and left in t.hpath, and the
// directories on the way are made the tree's own (see own): the caller is
// about to change the entry.
func (t *Tree) parentOf(p string, mark bool) (*node, string, error) {
	if mark {
		t.root = t.own(t.root)
	}
	t.chain = append(t.chain[:0], t.root)
	t.hpath = t.hpath[:0]
	dir := t.root
	for {
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return dir, p, nil
		}
		name := p[:i]
		p = p[i+1:]
		k := t.hs.key(name)
		c := t.find(dir.x, &k, name, mark)
		if c == nil {
			return nil, "", ErrNotFound
		}
		if c.kind != KindDir {
			return nil, "", ErrNotDir
		}
		if mark {
			c = t.ownChild(dir.x, c)
		}
		dir = c
		t.chain = append(t.chain, dir)
	}
}

// lookup returns the node at p without modifying anything.
func (t *Tree) lookup(p string) (*node, error) {
	if !ValidPath(p) {
		return nil, ErrInvalidPath
	}
	if p == "" {
		return t.root, nil
	}
	dir, name, err := t.parentOf(p, false)
	if err != nil {
		return nil, err
	}
	k := t.hs.key(name)
	n := t.find(dir.x, &k, name, false)
	if n == nil {
		return nil, ErrNotFound
	}
	return n, nil
}

// applyDelta adds sign*c to the counts of every directory in t.chain and
// its excluded files to every HAMT node in t.hpath.
func (t *Tree) applyDelta(c *counts, sign int64) {
	for _, d := range t.chain {
		d.x.cnt.add(c, sign)
	}
	if e := int32(c.byStatus[StatusExcluded]); e != 0 {
		for _, h := range t.hpath {
			h.excl += int32(sign) * e
		}
	}
}

// attach inserts n, absent so far, into dir; parentOf(path, true) must
// have just resolved dir.
func (t *Tree) attach(dir *node, k *[32]byte, n *node) {
	t.insertAt(dir.x, k, n)
	c := contrib(n)
	t.applyDelta(&c, 1)
	t.count += n.size()
}

// detach removes the entry name from dir and returns it (nil if absent);
// parentOf(path, true) must have just resolved dir.
func (t *Tree) detach(dir *node, k *[32]byte, name string) *node {
	n := t.removeAt(dir.x, k, name)
	if n == nil {
		return nil
	}
	c := contrib(n)
	t.applyDelta(&c, -1)
	t.count -= n.size()
	return n
}

func validEntry(e *Entry) bool {
	return (e.Kind == KindFile || e.Kind == KindSymlink) && e.Status < NumStatus
}

// Put creates or replaces the file or symlink at p. The parent must exist
// and be a directory; p must not be a directory (ErrIsDir). A symlink's
// Digest is computed from its Target and its Status is always verified.
func (t *Tree) Put(p string, e Entry) error {
	if p == "" || !ValidPath(p) {
		return pathErr("put", p, ErrInvalidPath)
	}
	if !validEntry(&e) {
		return pathErr("put", p, ErrInvalidEntry)
	}
	dir, name, err := t.parentOf(p, true)
	if err != nil {
		return pathErr("put", p, err)
	}
	k := t.hs.key(name)
	start := len(t.hpath)
	if old := t.find(dir.x, &k, name, true); old != nil {
		if old.kind == KindDir {
			return pathErr("put", p, ErrIsDir)
		}
		t.replace(dir.x, old, &e, &k, start)
		return nil
	}
	t.hpath = t.hpath[:start]
	nd := newEntryNode(name, &e, true)
	t.stamp(nd)
	t.attach(dir, &k, nd)
	return nil
}

// replace links a node holding e in place of the file or symlink n, a
// child of the directory x; t.hpath holds the path to n, its own
// directory's part from index start.
func (t *Tree) replace(x *ext, n *node, e *Entry, k *[32]byte, start int) {
	before := contrib(n)
	was := n.contributes()
	var c *node
	if n.kind == KindFile && e.Kind == KindFile && n.nlen == nameLong && n.x.epoch == t.epoch && !spells(n.x.long, &e.Digest) {
		// Made since the last Freeze, so in no Frozen view, and its name
		// does not depend on its digest: change it in place. (A name that
		// now spells the digest, as a blob's does once it is hashed, gets a
		// new node that stores it as the digest.)
		n.digest, n.status, n.meta, n.changedAt, n.verifiedAt = e.Digest, e.Status, e.Meta, e.ChangedAt, e.VerifiedAt
		c = n
	} else {
		var b [blobNameLen]byte
		c = newEntryNode(n.view(&b), e, n.nlen != nameLong) // a long name is the tree's own string: share it
		t.stamp(c)
		t.relink(x, n, c)
	}
	after := contrib(c)
	t.applyDelta(&before, -1)
	t.applyDelta(&after, 1)
	if is := c.contributes(); is != was {
		delta := int32(1)
		if was {
			delta = -1
		}
		for _, h := range t.hpath[start:] {
			h.nc += delta
		}
		fixBits(t.hpath[start:], k)
	}
}

// stamp records that the new file or symlink n belongs to the current
// epoch, where it has an ext to record it in (see replace).
func (t *Tree) stamp(n *node) {
	if n.x != nil {
		n.x.epoch = t.epoch
	}
}

// Update modifies the file or symlink at p in place. fn must not change the
// Kind (ErrInvalidEntry, and nothing is modified).
func (t *Tree) Update(p string, fn func(e *Entry)) error {
	if p == "" || !ValidPath(p) {
		return pathErr("update", p, ErrInvalidPath)
	}
	dir, name, err := t.parentOf(p, true)
	if err != nil {
		return pathErr("update", p, err)
	}
	k := t.hs.key(name)
	start := len(t.hpath)
	n := t.find(dir.x, &k, name, true)
	if n == nil {
		return pathErr("update", p, ErrNotFound)
	}
	if n.kind == KindDir {
		return pathErr("update", p, ErrIsDir)
	}
	e := n.entry()
	fn(&e)
	if e.Kind != n.kind || !validEntry(&e) {
		return pathErr("update", p, ErrInvalidEntry)
	}
	t.replace(dir.x, n, &e, &k, start)
	return nil
}

// Mkdir creates the directory p. It is a no-op if a directory is already
// there and fails with ErrExists if something else is. The new directory's
// and its parent's ChangedAt become changedAt.
func (t *Tree) Mkdir(p string, changedAt int64) error {
	if !ValidPath(p) {
		return pathErr("mkdir", p, ErrInvalidPath)
	}
	if p == "" {
		return nil
	}
	dir, name, err := t.parentOf(p, false)
	if err != nil {
		return pathErr("mkdir", p, err)
	}
	k := t.hs.key(name)
	if old := t.find(dir.x, &k, name, false); old != nil {
		if old.kind == KindDir {
			return nil
		}
		return pathErr("mkdir", p, ErrExists)
	}
	dir, _, _ = t.parentOf(p, true) // mark the path: the directory listing changes
	nd := newDir(name, changedAt)
	nd.x.epoch = t.epoch
	t.attach(dir, &k, nd)
	dir.changedAt = changedAt
	return nil
}

// MkdirAll creates p and any missing parents. A parent that is not a
// directory gives ErrNotDir; p itself, ErrExists.
func (t *Tree) MkdirAll(p string, changedAt int64) error {
	if !ValidPath(p) {
		return pathErr("mkdir", p, ErrInvalidPath)
	}
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			err := t.Mkdir(p[:i], changedAt)
			if i < len(p) && errors.Is(err, ErrExists) {
				return pathErr("mkdir", p, ErrNotDir) // a parent is not a directory, as os.MkdirAll says
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove deletes the file, symlink or whole directory subtree at p and sets
// its parent's ChangedAt.
func (t *Tree) Remove(p string, changedAt int64) error {
	if p == "" || !ValidPath(p) {
		return pathErr("remove", p, ErrInvalidPath)
	}
	dir, name, err := t.parentOf(p, true)
	if err != nil {
		return pathErr("remove", p, err)
	}
	k := t.hs.key(name)
	if t.detach(dir, &k, name) == nil {
		return pathErr("remove", p, ErrNotFound)
	}
	dir.changedAt = changedAt
	return nil
}

// related reports whether a and b are equal or one is an ancestor of the other.
func related(a, b string) bool {
	return a == b || strings.HasPrefix(b, a+"/") || strings.HasPrefix(a, b+"/")
}

// resolve returns the parent directory of p, the entry at p (nil if
// absent) and the key of its name.
func (t *Tree) resolve(p string) (dir, n *node, name string, k [32]byte, err error) {
	dir, name, err = t.parentOf(p, false)
	if err != nil {
		return nil, nil, "", k, err
	}
	k = t.hs.key(name)
	return dir, t.find(dir.x, &k, name, false), name, k, nil
}

// detachPath removes the entry at p, which exists, and returns its parent
// directory (the tree's own: see own).
func (t *Tree) detachPath(p string, name string, k *[32]byte) *node {
	dir, _, _ := t.parentOf(p, true)
	t.detach(dir, k, name)
	return dir
}

// attachPath inserts a copy of n named name at p, whose parent directory
// exists, and returns that directory and the copy.
func (t *Tree) attachPath(p string, name string, k *[32]byte, n *node) (dir, c *node) {
	dir, _, _ = t.parentOf(p, true)
	c = n.renamed(name)
	t.attach(dir, k, c)
	return dir, c
}

// Rename moves the entry or subtree at from to to, replacing whatever is at
// to. The parent of to must exist. The caller has checked the POSIX rules;
// moving a directory into itself or over one of its ancestors is
// ErrInvalidPath. Both parents' and the moved entry's ChangedAt become
// changedAt.
func (t *Tree) Rename(from, to string, changedAt int64) error {
	if from == "" || to == "" || !ValidPath(from) || !ValidPath(to) {
		return pathErr("rename", from, ErrInvalidPath)
	}
	if from == to {
		if _, err := t.lookup(from); err != nil {
			return pathErr("rename", from, err)
		}
		return nil
	}
	if related(from, to) {
		return pathErr("rename", from, ErrInvalidPath)
	}
	_, nf, fname, fk, err := t.resolve(from)
	if err == nil && nf == nil {
		err = ErrNotFound
	}
	if err != nil {
		return pathErr("rename", from, err)
	}
	_, old, tname, tk, err := t.resolve(to)
	if err != nil {
		return pathErr("rename", to, err)
	}
	if old != nil {
		t.detachPath(to, tname, &tk)
	}
	fdir := t.detachPath(from, fname, &fk)
	tdir, nf := t.attachPath(to, tname, &tk, nf)
	fdir.changedAt = changedAt
	tdir.changedAt = changedAt
	nf.changedAt = changedAt
	return nil
}

// Exchange swaps the entries (or subtrees) at a and b, as RENAME_EXCHANGE
// does. Both must exist and neither may contain the other.
func (t *Tree) Exchange(a, b string, changedAt int64) error {
	if a == "" || b == "" || !ValidPath(a) || !ValidPath(b) {
		return pathErr("exchange", a, ErrInvalidPath)
	}
	if a != b && related(a, b) {
		return pathErr("exchange", a, ErrInvalidPath)
	}
	_, na, aname, ak, err := t.resolve(a)
	if err == nil && na == nil {
		err = ErrNotFound
	}
	if err != nil {
		return pathErr("exchange", a, err)
	}
	_, nb, bname, bk, err := t.resolve(b)
	if err == nil && nb == nil {
		err = ErrNotFound
	}
	if err != nil {
		return pathErr("exchange", b, err)
	}
	if a == b {
		return nil
	}
	t.detachPath(a, aname, &ak)
	t.detachPath(b, bname, &bk)
	bdir, na := t.attachPath(b, bname, &bk, na)
	adir, nb := t.attachPath(a, aname, &ak, nb)
	adir.changedAt = changedAt
	bdir.changedAt = changedAt
	na.changedAt = changedAt
	nb.changedAt = changedAt
	return nil
}

// Get returns the entry at p. For a directory, Kind is KindDir, Digest the
// subtree digest and ChangedAt the directory's own; its Status, Meta and
// VerifiedAt are zero (Summary aggregates its subtree).
func (t *Tree) Get(p string) (Entry, bool) {
	n, err := t.lookup(p)
	if err != nil {
		return Entry{}, false
	}
	if n.kind == KindDir {
		t.refreshDir(n)
	}
	return n.entry(), true
}

// Summary returns the aggregates of the subtree at p (for a file or a
// symlink, of the entry alone).
func (t *Tree) Summary(p string) (Summary, bool) {
	n, err := t.lookup(p)
	if err != nil {
		return Summary{}, false
	}
	if n.kind == KindDir {
		t.refreshDir(n)
		r := n.x.root
		return summaryOf(n.x.cnt, n.digest, max(n.changedAt, r.chg), r.ver), true
	}
	c := contrib(n)
	chg, ver := times(n)
	return summaryOf(&c, n.digest, chg, ver), true
}

// Root returns the digest of the whole tree.
func (t *Tree) Root() Digest {
	t.refreshDir(t.root)
	return t.root.digest
}

// Len returns the number of entries (files, directories and symlinks, the
// root excluded).
func (t *Tree) Len() int { return int(t.count) }

// List calls fn for the children of dir in ascending byte order of name,
// starting strictly after `after` ("" = from the first), until fn returns
// false. fn must not modify the tree.
func (t *Tree) List(dir, after string, fn func(name string, e Entry) bool) error {
	d, err := t.lookup(dir)
	if err != nil {
		return pathErr("list", dir, err)
	}
	if d.kind != KindDir {
		return pathErr("list", dir, ErrNotDir)
	}
	t.refreshDir(d)
	d.x.ascend(after, func(n *node) bool { return fn(n.name(), n.entry()) })
	return nil
}

// Walk visits every entry but the root depth-first, parents before
// children, siblings in ascending byte order of name (so paths come in
// ascending order compared name by name). A non-nil error from fn stops the
// walk and is returned. fn must not modify the tree.
func (t *Tree) Walk(fn func(p string, e Entry) error) error {
	t.refreshDir(t.root)
	return walkDir(t.root, "", fn)
}

func walkDir(d *node, prefix string, fn func(p string, e Entry) error) error {
	var err error
	d.x.ascend("", func(n *node) bool {
		p := n.name()
		if prefix != "" {
			p = prefix + "/" + n.name()
		}
		if err = fn(p, n.entry()); err != nil {
			return false
		}
		if n.kind == KindDir {
			err = walkDir(n, p, fn)
		}
		return err == nil
	})
	return err
}
