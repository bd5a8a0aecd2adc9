package ledger

import (
	"errors"
	"path"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/checker"
)

// Keeper turns the operations that crossed the mount, and hash results, into changes of the tree,
// hash jobs and typed findings. It is the tracker's logic without its I/O: every status of a file
// it needs comes in as a hashtree.Meta the driver read, and everything it decides goes out through
// the Sink, synchronously, while the driver holds its lock. It does no I/O of its own, starts no
// goroutine and reads no clock: the one status read it needs (of a name, after a rename or when a
// file must be hashed again) it asks of the driver's Stat, a single lstat.
//
// A Keeper is not safe for concurrent use: the driver serialises every call (the tracker's mu).
type Keeper struct {
	tree  *hashtree.Tree
	book  *Ledger
	rules Rules
	out   Sink
	now   func() int64
	stat  func(rel string) (hashtree.Meta, bool)
}

// Rules classify paths: which are excluded from hashing (volatile upload areas) and which are
// blobs whose content must equal their name. Both must be pure and fast; nil means none.
type Rules struct {
	Excluded   func(rel string) bool
	BlobDigest func(rel string) (digest.Digest, bool)
}

func (r Rules) excluded(rel string) bool { return r.Excluded != nil && r.Excluded(rel) }

func (r Rules) blob(rel string) (digest.Digest, bool) {
	if r.BlobDigest == nil {
		return "", false
	}
	return r.BlobDigest(rel)
}

// Sink receives what the Keeper decides. Its methods must not call back into the Keeper.
type Sink interface {
	// Changed says rel now holds e; Removed says rel and everything under it are gone.
	Changed(rel string, e hashtree.Entry)
	Removed(rel string)
	// Dirty says the tree changed in a way no observer is told about (metadata only).
	Dirty()
	// Queue asks for j to be hashed; urgent jobs go before the backlog.
	Queue(j Job, urgent bool)
	// Mismatch is a blob whose content does not match its name; ClearMismatch withdraws one.
	Mismatch(rel string, c checker.NameCheck)
	ClearMismatch(rel string)
	// ClearPath withdraws the findings about rel and what lies under it (it is gone or moved).
	ClearPath(rel string)
	// Problem is a bookkeeping problem: logged and reported, never an error for the registry.
	Problem(rel, what string, err error)
	// Rescan asks for rel to be read again from the data directory after this call returns: the
	// tree disagreed with an operation the filesystem accepted (op), for the reason given.
	Rescan(rel, op string, cause error)
}

// NewKeeper returns a Keeper of tree, deciding by rules and reporting to out. clock gives the
// times it records (ns since the epoch); stat reads the status of a name (lstat), ok false when
// the name does not lead to a regular file, symlink or directory any more.
func NewKeeper(tree *hashtree.Tree, rules Rules, out Sink, clock func() int64, stat func(rel string) (hashtree.Meta, bool)) *Keeper {
	return &Keeper{tree: tree, book: New(), rules: rules, out: out, now: clock, stat: stat}
}

// Tree returns the tree the Keeper changes.
func (k *Keeper) Tree() *hashtree.Tree { return k.tree }

// SetTree replaces the tree (a snapshot was loaded, a scan finished).
func (k *Keeper) SetTree(t *hashtree.Tree) { k.tree = t }

// SetRules replaces the rules.
func (k *Keeper) SetRules(r Rules) { k.rules = r }

// Book returns the Keeper's ledger of files.
func (k *Keeper) Book() *Ledger { return k.book }

// EmptyDigest is the digest of an empty file.
var EmptyDigest = hashtree.SumBytes(nil)

// Prior is what a file in flight was before its change: a hash that finds the content unchanged
// (an open for writing that wrote nothing) restores it instead of hashing.
type Prior struct {
	Status    hashtree.Status
	Meta      hashtree.Meta
	HadDigest bool
}

// Pending is the data on a file in flight that the Keeper keeps in its File's Aux: the prior
// state, and the driver's own extra (a streaming hash), which the Keeper never reads.
type Pending struct {
	Prior
	Extra any
}

// PendingOf returns the data on an in-flight file, nil for none.
func PendingOf(f *File) *Pending {
	if f == nil {
		return nil
	}
	p, _ := f.Aux.(*Pending)
	return p
}

// OpenWrite records a writer of the file at rel with status m (created: the open made it). rel
// "" is a writer whose name is unknown or no longer leads to the file: counted for the inode,
// no name recorded.
func (k *Keeper) OpenWrite(rel string, m hashtree.Meta, created bool) *File {
	if rel == "" {
		f := k.book.OpenWrite(m.Ino, false)
		if f.Aux == nil {
			f.Aux = &Pending{}
		}
		return f
	}
	if created {
		k.dropGoneNames(rel, m.Ino)
	}
	p := k.markPending(rel, m, created)
	f := k.book.OpenWrite(m.Ino, created)
	f.Aux = p
	return f
}

// dropGoneNames unbinds the names the ledger holds for ino, other than rel, that no longer lead
// to it. It is for a file just created at rel: the ledger holding its inode number at all means
// the number was reused, and the earlier file's names (deleted behind the mount, or it would have
// been forgotten) would otherwise become the new file's, and its hash be recorded there. Names
// that still lead to the inode are kept (an O_CREAT open without O_EXCL may find a file that
// appeared behind the mount meanwhile). Costs nothing for a fresh inode number: one map lookup.
func (k *Keeper) dropGoneNames(rel string, ino uint64) {
	if k.book.File(ino) == nil {
		return
	}
	// rel first, so that a name kept beside it is not forgotten as a single name meanwhile.
	k.book.Bind(rel, ino)
	for _, p := range k.book.Names(ino) {
		if p == rel {
			continue
		}
		if m, ok := k.stat(p); !ok || m.Ino != ino {
			k.book.Unbind(p)
		}
	}
}

// CloseWrite records that a writer of ino closed; the last one queues the hash.
func (k *Keeper) CloseWrite(ino uint64) {
	if j, ok := k.book.CloseWrite(ino); ok {
		k.out.Queue(j, true)
	}
}

// Truncated records a truncate of the file at rel (status m) that no writer's handle made.
func (k *Keeper) Truncated(rel string, m hashtree.Meta) *Pending {
	p := k.markPending(rel, m, false)
	f, j, ok := k.book.Changed(m.Ino)
	f.Aux = p
	if ok {
		k.out.Queue(j, true)
	}
	return p
}

// Rehash marks the file at rel (status m) pending and queues its hash.
func (k *Keeper) Rehash(rel string, m hashtree.Meta, urgent bool) {
	p := k.markPending(rel, m, false)
	p.HadDigest = false
	f, j, ok := k.book.Changed(m.Ino)
	f.Aux = p
	if ok {
		k.out.Queue(j, urgent)
	}
}

// markPending marks the tree entry of the file at rel pending, names it in the ledger, and
// returns its in-flight data: the data it has, or new data that remembers the entry as it was.
func (k *Keeper) markPending(rel string, m hashtree.Meta, created bool) *Pending {
	var p *Pending
	if f := k.book.File(m.Ino); f != nil && f.InFlight && !(created && f.Writers == 0) {
		// (A created file whose inode number a queued file still holds is another file: the
		// number was reused.)
		p = PendingOf(f)
	}
	if p == nil {
		p = &Pending{}
		if e, ok := k.tree.Get(rel); ok && e.Kind == hashtree.KindFile && !created {
			p.Status, p.Meta, p.HadDigest = e.Status, e.Meta, e.Status != hashtree.StatusPending
		}
	}
	k.book.Bind(rel, m.Ino)
	excluded := k.rules.excluded(rel)
	ts := k.now()
	e, ok := k.tree.Get(rel)
	if !ok || e.Kind != hashtree.KindFile || created {
		ne := hashtree.Entry{Kind: hashtree.KindFile, Digest: EmptyDigest, Status: hashtree.StatusPending, Meta: m, ChangedAt: ts}
		if excluded {
			ne.Digest, ne.Status = hashtree.Digest{}, hashtree.StatusExcluded
		}
		if ok && e.Kind == hashtree.KindDir {
			k.out.Problem(rel, "a file replaced a directory the tree still had", nil)
			_ = k.tree.Remove(rel, ts)
		}
		k.Put(rel, ne)
		return p
	}
	if e.Meta.Ino != m.Ino {
		// Another file now has this name (replaced in DATA behind the mount's back): the entry
		// describes the new inode from here on, or its hash would be refused.
		k.update(rel, func(e *hashtree.Entry) { e.Meta = m })
	}
	if !excluded && e.Status != hashtree.StatusPending {
		k.update(rel, func(e *hashtree.Entry) { e.Status = hashtree.StatusPending })
	}
	return p
}

// Touched refreshes the metadata of rel (status m) after chmod, chown, utimes or an xattr change.
func (k *Keeper) Touched(rel string, m hashtree.Meta) {
	if e, ok := k.tree.Get(rel); ok && e.Kind != hashtree.KindDir {
		_ = k.tree.Update(rel, func(e *hashtree.Entry) { e.Meta = m })
		k.out.Dirty()
	}
	k.refresh(m.Ino, k.book.Names(m.Ino), rel, m)
}

// refresh sets the metadata of the names of inode ino other than except to m (every name of an
// inode shares its status) after an operation on one of them changed its ctime, so that a later
// verification does not take it for a change behind the mount. Content changes are the hash's
// business: a name whose size differs is left alone.
func (k *Keeper) refresh(ino uint64, names []string, except string, m hashtree.Meta) {
	for _, p := range names {
		if p == except {
			continue
		}
		e, ok := k.tree.Get(p)
		if !ok || e.Kind != hashtree.KindFile || e.Meta.Ino != ino || m.Size != e.Meta.Size {
			continue
		}
		_ = k.tree.Update(p, func(x *hashtree.Entry) { x.Meta = m })
	}
}

// Mkdir records a new directory.
func (k *Keeper) Mkdir(rel string) {
	if err := k.tree.Mkdir(rel, k.now()); err != nil {
		k.out.Rescan(rel, "mkdir", err)
		return
	}
	k.out.Dirty()
}

// Symlink records a new symbolic link with status m.
func (k *Keeper) Symlink(rel, target string, m hashtree.Meta) {
	k.Put(rel, hashtree.Entry{Kind: hashtree.KindSymlink, Target: target, Status: hashtree.StatusVerified, Meta: m, ChangedAt: k.now()})
}

// Link records a hard link newRel to the file at oldRel; m is the status of the inode after it.
func (k *Keeper) Link(oldRel, newRel string, m hashtree.Meta) {
	e, ok := k.tree.Get(oldRel)
	if !ok || e.Kind == hashtree.KindDir {
		k.out.Rescan(newRel, "link", hashtree.ErrNotFound)
		return
	}
	e.Meta = m
	e.ChangedAt = k.now()
	k.Put(newRel, e)
	_ = k.tree.Update(oldRel, func(o *hashtree.Entry) { o.Meta.Ctime = m.Ctime })
	k.book.Link(oldRel, newRel, m.Ino)
	k.refresh(m.Ino, k.book.Names(m.Ino), newRel, m)
	k.Reclassify(newRel)
}

// Unlink records the removal of a file or symlink. A file that keeps other names has their
// metadata refreshed: the link count, hence the ctime, changed.
func (k *Keeper) Unlink(rel string) {
	e, ok := k.tree.Get(rel)
	var others []string
	if ok && e.Kind == hashtree.KindFile {
		for _, p := range k.Names(e.Meta.Ino) { // before the ledger forgets a file left with one name
			if p != rel {
				others = append(others, p)
			}
		}
	}
	k.remove(rel)
	for _, p := range others {
		if m, ok := k.stat(p); ok && m.Ino == e.Meta.Ino {
			k.refresh(m.Ino, others, "", m)
			return
		}
	}
}

// Rmdir records the removal of an (empty) directory.
func (k *Keeper) Rmdir(rel string) { k.remove(rel) }

func (k *Keeper) remove(rel string) {
	if _, ok := k.tree.Get(rel); !ok {
		return
	}
	_ = k.tree.Remove(rel, k.now())
	k.book.Unbind(rel)
	k.out.ClearPath(rel)
	k.out.Removed(rel)
}

// Rename records a successful rename(2)/renameat2(2) from oldRel to newRel (exchange:
// RENAME_EXCHANGE).
func (k *Keeper) Rename(oldRel, newRel string, exchange bool) {
	ts := k.now()
	if exchange {
		if err := k.tree.Exchange(oldRel, newRel, ts); err != nil {
			// It happened in DATA all the same: the ledger's names swap, so the rescans find
			// the files in flight under them at their new names instead of adding second ones.
			k.book.Exchange(oldRel, newRel)
			k.out.Rescan(oldRel, "rename exchange", err)
			k.out.Rescan(newRel, "rename exchange", err)
			return
		}
		k.book.Exchange(oldRel, newRel)
		k.out.Dirty()
		k.afterMove(oldRel)
		k.afterMove(newRel)
		return
	}
	if oldRel == newRel {
		return
	}
	src, ok := k.tree.Get(oldRel)
	if !ok {
		// The rename happened in DATA all the same: the ledger's names under oldRel (files in
		// flight there) move with it, so the rescan of newRel finds them at their new names
		// instead of adding a second name each.
		k.book.Rename(oldRel, newRel)
		k.out.Rescan(newRel, "rename of an untracked source", hashtree.ErrNotFound)
		return
	}
	if dst, ok := k.tree.Get(newRel); ok && src.Kind == hashtree.KindFile && dst.Kind == hashtree.KindFile &&
		src.Meta.Ino != 0 && src.Meta.Ino == dst.Meta.Ino {
		// Two entries with one inode number: two names of one file, and rename(2) did nothing
		// (POSIX), but only while oldRel still leads there. The kernel does not even pass such a
		// rename on when it knows both names; what does arrive is more often a stale entry at
		// newRel (deleted behind the mount) whose inode number the filesystem gave to the file
		// now renamed onto it. One lstat, only in this rare case, tells them apart.
		if m, ok := k.stat(oldRel); ok && m.Ino == src.Meta.Ino {
			return
		}
		// A real rename: the ledger may also hold newRel as a name of this inode (its previous
		// incarnation's); it is not one, so it goes first and the names below it move.
		k.book.Unbind(newRel)
	}
	// Whatever was at newRel is replaced: it loses its name, and oldRel's names move.
	k.book.Rename(oldRel, newRel)
	if err := k.tree.Rename(oldRel, newRel, ts); err != nil {
		k.out.Rescan(oldRel, "rename", err)
		k.out.Rescan(newRel, "rename", err)
		return
	}
	k.out.Dirty()
	k.out.ClearPath(oldRel)
	k.out.ClearPath(newRel)
	k.out.Removed(oldRel)
	k.afterMove(newRel)
}

// afterMove fixes up what a rename changes besides names: the ctime, exclusion and blob checks,
// for rel and (a directory) everything under it; then tells observers.
func (k *Keeper) afterMove(rel string) {
	e, ok := k.tree.Get(rel)
	if !ok {
		return
	}
	if e.Kind != hashtree.KindDir {
		if m, ok := k.stat(rel); ok {
			_ = k.tree.Update(rel, func(x *hashtree.Entry) { x.Meta = m })
			k.refresh(m.Ino, k.book.Names(m.Ino), rel, m)
		}
		k.Reclassify(rel)
		return
	}
	var files []string
	_ = WalkSubtree(k.tree, rel, func(p string, e hashtree.Entry) error {
		if e.Kind != hashtree.KindDir {
			files = append(files, p)
		}
		return nil
	})
	for _, p := range files {
		k.Reclassify(p)
	}
}

// Reclassify applies the exclusion and blob rules to a file at its (new) name, and tells
// observers about the entry.
func (k *Keeper) Reclassify(rel string) {
	e, ok := k.tree.Get(rel)
	if !ok {
		return
	}
	defer func() {
		if e2, ok := k.tree.Get(rel); ok {
			k.out.Changed(rel, e2)
		}
	}()
	if e.Kind != hashtree.KindFile {
		return
	}
	excluded := k.rules.excluded(rel)
	switch {
	case excluded && e.Status != hashtree.StatusExcluded:
		_ = k.tree.Update(rel, func(x *hashtree.Entry) { x.Status, x.Digest = hashtree.StatusExcluded, hashtree.Digest{} })
	case !excluded && e.Status == hashtree.StatusExcluded:
		// It arrives from a volatile area (an upload committed into blobs/): hash it now.
		if m, ok := k.stat(rel); ok {
			k.Rehash(rel, m, true)
		}
	case !excluded:
		k.CheckBlob(rel)
	}
}

// CheckBlob compares a settled file at a blob path with the digest its name promises.
func (k *Keeper) CheckBlob(rel string) {
	want, ok := k.rules.blob(rel)
	if !ok {
		return
	}
	e, ok := k.tree.Get(rel)
	if !ok || e.Kind != hashtree.KindFile || e.Status == hashtree.StatusPending || e.Status == hashtree.StatusExcluded {
		return
	}
	c := checker.CheckName(want, checker.Sums{SHA256: e.Digest})
	if c.Verdict == checker.Unchecked {
		if m, ok := k.stat(rel); ok { // only a hash can check another algorithm
			k.Rehash(rel, m, true)
		}
		return
	}
	status := hashtree.StatusVerified
	if c.Verdict == checker.Mismatch {
		status = hashtree.StatusMismatch
		k.out.Mismatch(rel, c)
	} else {
		k.out.ClearMismatch(rel)
	}
	if status != e.Status {
		_ = k.tree.Update(rel, func(x *hashtree.Entry) { x.Status = status })
	}
}

// Put stores an entry, creating missing parent directories (the tree may lag behind an
// out-of-band mkdir), and tells observers.
func (k *Keeper) Put(rel string, e hashtree.Entry) {
	err := k.tree.Put(rel, e)
	if errors.Is(err, hashtree.ErrNotFound) {
		if err = k.tree.MkdirAll(path.Dir(rel), e.ChangedAt); err == nil || path.Dir(rel) == "." {
			err = k.tree.Put(rel, e)
		}
	}
	if errors.Is(err, hashtree.ErrIsDir) {
		_ = k.tree.Remove(rel, e.ChangedAt)
		err = k.tree.Put(rel, e)
	}
	if err != nil {
		k.out.Problem(rel, "tree put", err)
		return
	}
	k.out.Changed(rel, e)
}

func (k *Keeper) update(rel string, fn func(*hashtree.Entry)) {
	if err := k.tree.Update(rel, fn); err == nil {
		k.out.Dirty()
	}
}

// Names lists the names of the file with inode ino, sorted: those the ledger knows that the tree
// still gives that inode.
func (k *Keeper) Names(ino uint64) []string {
	names := k.book.Names(ino)
	kept := names[:0]
	for _, p := range names {
		if e, ok := k.tree.Get(p); ok && e.Kind == hashtree.KindFile && (e.Meta.Ino == ino || e.Meta.Ino == 0) {
			kept = append(kept, p)
		}
	}
	return kept
}

// Hashed is what hashing a file produced.
type Hashed struct {
	Sum   hashtree.Digest
	Other digest.Digest // the blob-name algorithm's digest when it is not sha256
	Meta  hashtree.Meta
	Read  bool // Sum is the content's digest (not only metadata was read)
}

// Record records the hash of inode ino at its name p. unchanged says the content is known to be
// what it was before the writer (prior.Status applies); it is the caller's comparison of the
// metadata with the prior's.
func (k *Keeper) Record(p string, ino uint64, res Hashed, unchanged bool, prior hashtree.Status) {
	excluded := k.rules.excluded(p)
	var want digest.Digest
	if !excluded {
		want, _ = k.rules.blob(p)
	}
	e, ok := k.tree.Get(p)
	if !ok || e.Kind != hashtree.KindFile || (e.Meta.Ino != 0 && e.Meta.Ino != ino) {
		return // p now names another file
	}
	ts := k.now()
	ne := e
	ne.Meta = res.Meta
	// A ctime the mount recorded after the hash's fstat (a link, a chmod) is newer: keep it.
	if e.Meta.Size == res.Meta.Size && e.Meta.Mtime == res.Meta.Mtime && e.Meta.Ctime > res.Meta.Ctime {
		ne.Meta.Ctime = e.Meta.Ctime
	}
	switch {
	case excluded:
		ne.Digest, ne.Status = hashtree.Digest{}, hashtree.StatusExcluded
	case !res.Read && !unchanged:
		ne.Status = hashtree.StatusUnverified
	case unchanged:
		ne.Status = prior
		if ne.Status == hashtree.StatusPending {
			ne.Status = hashtree.StatusVerified
		}
	default:
		if ne.Digest != res.Sum {
			ne.ChangedAt = ts
		}
		ne.Digest = res.Sum
		ne.Status = hashtree.StatusVerified
		ne.VerifiedAt = ts
		k.out.ClearMismatch(p)
		if want != "" {
			switch c := checker.CheckName(want, checker.Sums{SHA256: res.Sum, Other: res.Other}); c.Verdict {
			case checker.Unchecked:
				ne.Status = hashtree.StatusUnverified // hashed through a name that did not ask for it
			case checker.Mismatch:
				ne.Status = hashtree.StatusMismatch
				k.out.Mismatch(p, c)
			}
		}
	}
	if ne == e {
		return // nothing changed (a reader's O_RDWR open, an excluded file left as it was)
	}
	if err := k.tree.Update(p, func(x *hashtree.Entry) { *x = ne }); err != nil {
		return
	}
	k.out.Changed(p, ne)
}

// WalkSubtree visits every entry under dir (dir itself excluded) in path order.
func WalkSubtree(tr *hashtree.Tree, dir string, fn func(p string, e hashtree.Entry) error) error {
	var err error
	lerr := tr.List(dir, "", func(name string, e hashtree.Entry) bool {
		p := name
		if dir != "" {
			p = dir + "/" + name
		}
		if err = fn(p, e); err != nil {
			return false
		}
		if e.Kind == hashtree.KindDir {
			if err = WalkSubtree(tr, p, fn); err != nil {
				return false
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	return lerr
}
