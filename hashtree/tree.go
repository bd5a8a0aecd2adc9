package hashtree

import (
	"slices"
	"strings"
)

// Tree is the Merkle tree of one directory hierarchy. Create it with New.
// It is not safe for concurrent use: callers serialise all calls.
type Tree struct {
	root  *node   // the root directory, name ""
	count int64   // entries, the root excluded
	hs    *hasher // scratch for hashing; used by every method, hence no concurrency
	chain []*node // scratch: the directories from the root to the last resolved parent
}

// New returns an empty tree (just the root directory).
func New() *Tree { return &Tree{root: newDir("", 0), hs: newHasher()} }

func pathErr(op, p string, err error) error { return &PathError{Op: op, Path: p, Err: err} }

// parentOf resolves the directory that holds p (p != ""), leaving the
// directories from the root down to it in t.chain. With mark set, every
// HAMT node on the way is marked dirty: the caller is about to modify the
// entry.
func (t *Tree) parentOf(p string, mark bool) (*node, string, error) {
	t.chain = append(t.chain[:0], t.root)
	dir := t.root
	for {
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return dir, p, nil
		}
		name := p[:i]
		p = p[i+1:]
		k := t.hs.key(name)
		c := dir.x.find(&k, name, mark)
		if c == nil {
			return nil, "", ErrNotFound
		}
		if c.kind != KindDir {
			return nil, "", ErrNotDir
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
	n := dir.x.find(&k, name, false)
	if n == nil {
		return nil, ErrNotFound
	}
	return n, nil
}

func addTotal(chain []*node, delta int64) {
	for _, d := range chain {
		d.x.total += delta
	}
}

func validEntry(e *Entry) bool {
	return (e.Kind == KindFile || e.Kind == KindSymlink) && e.Status < NumStatus
}

// set copies e into the file or symlink n.
func (n *node) set(e *Entry) {
	n.kind = e.Kind
	n.meta = e.Meta
	n.changedAt = e.ChangedAt
	n.verifiedAt = e.VerifiedAt
	if e.Kind == KindSymlink {
		if n.x == nil || n.x.target != e.Target {
			n.x = &ext{target: strings.Clone(e.Target)}
		}
		n.digest = symlinkDigest(e.Target)
		n.status = StatusVerified
		return
	}
	n.x = nil
	n.digest = e.Digest
	n.status = e.Status
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
	if old := dir.x.find(&k, name, true); old != nil {
		if old.kind == KindDir {
			return pathErr("put", p, ErrIsDir)
		}
		was := old.contributes()
		old.set(&e)
		t.fixContrib(dir, &k, was, old.contributes())
		return nil
	}
	nd := &node{name: strings.Clone(name)}
	nd.set(&e)
	dir.x.insert(t.hs, &k, nd)
	addTotal(t.chain, 1)
	t.count++
	return nil
}

func (t *Tree) fixContrib(dir *node, k *[32]byte, was, is bool) {
	switch {
	case was && !is:
		dir.x.adjustNC(k, -1)
	case !was && is:
		dir.x.adjustNC(k, 1)
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
	n := dir.x.find(&k, name, true)
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
	was := n.contributes()
	n.set(&e)
	t.fixContrib(dir, &k, was, n.contributes())
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
	if old := dir.x.find(&k, name, false); old != nil {
		if old.kind == KindDir {
			return nil
		}
		return pathErr("mkdir", p, ErrExists)
	}
	t.parentOf(p, true) // mark the path: the directory listing changes
	dir.x.insert(t.hs, &k, newDir(strings.Clone(name), changedAt))
	dir.changedAt = changedAt
	addTotal(t.chain, 1)
	t.count++
	return nil
}

// MkdirAll creates p and any missing parents.
func (t *Tree) MkdirAll(p string, changedAt int64) error {
	if !ValidPath(p) {
		return pathErr("mkdir", p, ErrInvalidPath)
	}
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if err := t.Mkdir(p[:i], changedAt); err != nil {
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
	n := dir.x.remove(&k, name)
	if n == nil {
		return pathErr("remove", p, ErrNotFound)
	}
	addTotal(t.chain, -n.size())
	t.count -= n.size()
	dir.changedAt = changedAt
	return nil
}

// related reports whether a and b are equal or one is an ancestor of the other.
func related(a, b string) bool {
	return a == b || strings.HasPrefix(b, a+"/") || strings.HasPrefix(a, b+"/")
}

// detach resolves p for a move: its parent, a copy of the chain to it, the
// node (nil if absent) and its key.
func (t *Tree) detachInfo(p string) (dir *node, chain []*node, n *node, name string, k [32]byte, err error) {
	dir, name, err = t.parentOf(p, true)
	if err != nil {
		return nil, nil, nil, "", k, err
	}
	chain = slices.Clone(t.chain)
	k = t.hs.key(name)
	n = dir.x.find(&k, name, true)
	return dir, chain, n, name, k, nil
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
	fdir, fchain, nf, _, fk, err := t.detachInfo(from)
	if err != nil {
		return pathErr("rename", from, err)
	}
	if nf == nil {
		return pathErr("rename", from, ErrNotFound)
	}
	tdir, tchain, old, tname, tk, err := t.detachInfo(to)
	if err != nil {
		return pathErr("rename", to, err)
	}
	if old != nil {
		tdir.x.remove(&tk, tname)
		addTotal(tchain, -old.size())
		t.count -= old.size()
	}
	fdir.x.remove(&fk, nf.name)
	addTotal(fchain, -nf.size())
	nf.name = strings.Clone(tname)
	tdir.x.insert(t.hs, &tk, nf)
	addTotal(tchain, nf.size())
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
	adir, achain, na, aname, ak, err := t.detachInfo(a)
	if err != nil {
		return pathErr("exchange", a, err)
	}
	if na == nil {
		return pathErr("exchange", a, ErrNotFound)
	}
	bdir, bchain, nb, bname, bk, err := t.detachInfo(b)
	if err != nil {
		return pathErr("exchange", b, err)
	}
	if nb == nil {
		return pathErr("exchange", b, ErrNotFound)
	}
	if a == b {
		return nil
	}
	adir.x.remove(&ak, aname)
	bdir.x.remove(&bk, bname)
	addTotal(achain, nb.size()-na.size())
	addTotal(bchain, na.size()-nb.size())
	na.name, nb.name = nb.name, na.name
	bdir.x.insert(t.hs, &bk, na)
	adir.x.insert(t.hs, &ak, nb)
	adir.changedAt = changedAt
	bdir.changedAt = changedAt
	na.changedAt = changedAt
	nb.changedAt = changedAt
	return nil
}

// Get returns the entry at p. For a directory, Kind is KindDir, Digest the
// subtree digest and ChangedAt the directory's own.
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
	if n.kind != KindDir {
		var a agg
		a.add(n)
		return a.summary(n.digest), true
	}
	t.refreshDir(n)
	s := n.x.root.agg.summary(n.digest)
	s.ChangedAt = max(s.ChangedAt, n.changedAt)
	return s, true
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
	d.x.ascend(after, func(n *node) bool { return fn(n.name, n.entry()) })
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
		p := n.name
		if prefix != "" {
			p = prefix + "/" + n.name
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
