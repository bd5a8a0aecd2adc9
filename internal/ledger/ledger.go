// Package ledger is the tracker's bookkeeping of files, keyed by inode: which inodes have writers
// or a hash waiting, which generation of their content a hash job describes, and which names each
// inode has. It is a pure state machine: no I/O, no goroutines, no locks, no clock, no FUSE. The
// tracker drives it from the operations that crossed the mount and from its hash workers, under
// its own lock, and does all I/O itself.
//
// # Names are a projection of inode → names
//
// A file's names are not a table of paths kept in step with every rename by rewriting the paths
// under it. The ledger keeps a sparse trie of directory entries: a node per name component, only
// on the paths that lead to a file the ledger tracks (in flight, or known to have several links).
// A file's names are the paths of its nodes, computed by walking up the trie. So a rename of a
// directory moves one node, O(depth), however many tracked files lie under it; an unlink or a
// rename over a name detaches one node and visits only the tracked names below it; and two names
// that lead to one inode are one File by construction, so a hard link can never be half updated.
//
// # Generations
//
// Every change of a file's content that the tracker learns of (an open for writing, a truncate, a
// rehash) gives the file a new generation, from one counter for the whole ledger. A hash job
// carries the generation it was queued for and is current only while the file still has it and
// no writer: a result of an older generation is dropped. As generations are never reused, a job
// of a deleted file can never pass for a job of a new file that got the same inode number.
package ledger

import (
	"slices"
	"strings"
)

// File is the bookkeeping of one inode.
type File struct {
	Ino     uint64
	Writers int    // open handles with write access
	Gen     uint64 // generation of the content; see the package doc
	// InFlight says the file has writers or a hash job that is not settled yet.
	InFlight bool
	// Aux is the driver's own data for an in-flight file (its previous tree entry, a streaming
	// hash). The ledger never reads it; Settle clears it.
	Aux any

	names []*node // the trie nodes that name this inode
}

// Job is one hash of a file, as queued.
type Job struct {
	Ino uint64
	Gen uint64
}

// node is one name component in the trie of tracked names.
type node struct {
	parent *node
	name   string
	kids   map[string]*node
	file   *File // the file this name leads to, or nil for a directory on the way to one
}

// Ledger tracks files by inode. The zero value is not usable; call New.
type Ledger struct {
	root     node
	files    map[uint64]*File
	gen      uint64 // the last generation handed out
	inFlight int    // files with InFlight set
	// writing holds the files with Writers > 0, so that a question about open writers (the
	// tracker's Drain polls one every few milliseconds) costs the number of writers, not the
	// number of files the ledger holds for their names.
	writing map[uint64]*File
	binding *File // the file Bind is naming, which it must not forget meanwhile
}

// New returns an empty ledger.
func New() *Ledger {
	return &Ledger{files: map[uint64]*File{}, writing: map[uint64]*File{}}
}

// File returns the file with inode number ino, or nil when the ledger does not track it.
func (l *Ledger) File(ino uint64) *File { return l.files[ino] }

// InFlight returns the number of files with writers or a hash that is not settled.
func (l *Ledger) InFlight() int { return l.inFlight }

// Tracked returns the number of files the ledger holds (in flight or with several known names).
func (l *Ledger) Tracked() int { return len(l.files) }

// track returns the file for ino, creating it.
func (l *Ledger) track(ino uint64) *File {
	f := l.files[ino]
	if f == nil {
		f = &File{Ino: ino}
		l.files[ino] = f
	}
	return f
}

func (l *Ledger) nextGen() uint64 {
	l.gen++
	return l.gen
}

// OpenWrite records a new writer of ino and returns its file. created says the open created the
// file: then a file the ledger still holds for that inode number without writers is another,
// earlier incarnation (the number was reused), and its in-flight state is dropped; its names are
// kept only where the driver binds them again.
func (l *Ledger) OpenWrite(ino uint64, created bool) *File {
	f := l.files[ino]
	if f != nil && created && f.Writers == 0 && f.InFlight {
		f.Aux = nil
	}
	f = l.track(ino)
	f.Writers++
	l.writing[ino] = f
	f.Gen = l.nextGen()
	l.setInFlight(f, true)
	return f
}

// CloseWrite records that one writer of ino closed. When it was the last, the file's content is
// settled for now and the returned job, ok true, is to be hashed.
func (l *Ledger) CloseWrite(ino uint64) (Job, bool) {
	f := l.files[ino]
	if f == nil || f.Writers == 0 {
		return Job{}, false
	}
	f.Writers--
	if f.Writers > 0 {
		return Job{}, false
	}
	delete(l.writing, ino)
	return Job{Ino: ino, Gen: f.Gen}, true
}

// Changed records that the content of ino may have changed outside a writer's session (truncate
// by path, a rehash the driver asks for) and returns its file. A job is returned, ok true, when no
// writer holds the file; otherwise the last writer's close will queue one.
func (l *Ledger) Changed(ino uint64) (*File, Job, bool) {
	f := l.track(ino)
	f.Gen = l.nextGen()
	l.setInFlight(f, true)
	if f.Writers > 0 {
		return f, Job{}, false
	}
	return f, Job{Ino: ino, Gen: f.Gen}, true
}

// Invalidate gives ino's in-flight content a new generation without queueing anything (a truncate
// through a writer's own handle: its close queues the hash). It does nothing for a file that is
// not in flight.
func (l *Ledger) Invalidate(ino uint64) {
	if f := l.files[ino]; f != nil && f.InFlight {
		f.Gen = l.nextGen()
	}
}

// Requeue returns a job for the current generation of ino when the file is still in flight and
// has no writer (a hash that has to be tried again later).
func (l *Ledger) Requeue(ino uint64) (Job, bool) {
	f := l.files[ino]
	if f == nil || !f.InFlight || f.Writers > 0 {
		return Job{}, false
	}
	return Job{Ino: ino, Gen: f.Gen}, true
}

// Current returns the file of j when j is still the job to run: the file is in flight with j's
// generation and no writer. Otherwise a newer job, or a writer, owns the file and j is dropped.
func (l *Ledger) Current(j Job) (*File, bool) {
	f := l.files[j.Ino]
	if f == nil || !f.InFlight || f.Gen != j.Gen || f.Writers > 0 {
		return nil, false
	}
	return f, true
}

// Settle ends the in-flight state of ino (its hash was recorded, or given up). A file with a single
// name, or none, is forgotten; one with several names stays, for its names.
func (l *Ledger) Settle(ino uint64) {
	f := l.files[ino]
	if f == nil {
		return
	}
	l.setInFlight(f, false)
	f.Aux = nil
	f.Writers = 0
	delete(l.writing, ino)
	l.forgetIfIdle(f)
}

func (l *Ledger) setInFlight(f *File, on bool) {
	if f.InFlight == on {
		return
	}
	f.InFlight = on
	if on {
		l.inFlight++
	} else {
		l.inFlight--
	}
}

// forgetIfIdle drops f when nothing is left to know about it: not in flight and at most one name.
func (l *Ledger) forgetIfIdle(f *File) {
	if f.InFlight || len(f.names) > 1 || f == l.binding {
		return
	}
	for _, n := range f.names {
		n.file = nil
		l.prune(n)
	}
	f.names = nil
	if l.files[f.Ino] == f {
		delete(l.files, f.Ino)
	}
}

// Bind records that rel is a name of ino, tracking ino. Whatever rel named before loses that name,
// and so does anything the ledger had under rel (rel is a file now, not a directory).
func (l *Ledger) Bind(rel string, ino uint64) *File {
	n := l.lookup(rel, true)
	f := l.track(ino)
	// f is being given a name: dropping its other names below must not forget it.
	l.binding = f
	defer func() { l.binding = nil }()
	// n is given f before anything is dropped, so no pruning below can take n away.
	prev, kids := n.file, n.kids
	n.kids = nil
	if prev != f {
		n.file = f
		f.names = append(f.names, n)
		if prev != nil {
			l.removeName(prev, n)
		}
	}
	for _, k := range kids {
		l.detachSubtree(k)
	}
	return f
}

// Link records a hard link: oldRel and newRel both name ino.
func (l *Ledger) Link(oldRel, newRel string, ino uint64) {
	l.Bind(oldRel, ino)
	l.Bind(newRel, ino)
}

// Names returns the names of ino the ledger knows, sorted.
func (l *Ledger) Names(ino uint64) []string {
	f := l.files[ino]
	if f == nil {
		return nil
	}
	out := make([]string, 0, len(f.names))
	for _, n := range f.names {
		out = append(out, n.path())
	}
	slices.Sort(out)
	return out
}

// Ino returns the inode the ledger knows rel to name, if any.
func (l *Ledger) Ino(rel string) (uint64, bool) {
	n := l.lookup(rel, false)
	if n == nil || n.file == nil {
		return 0, false
	}
	return n.file.Ino, true
}

// Unbind records that rel and every name under it are gone (unlink, rmdir, a name replaced).
func (l *Ledger) Unbind(rel string) {
	n := l.lookup(rel, false)
	if n == nil {
		return
	}
	if n == &l.root {
		kids := n.kids
		n.kids = nil
		for _, k := range kids {
			l.detachSubtree(k)
		}
		return
	}
	l.detach(n)
	l.detachSubtree(n)
}

// Rename records rename(2) of from to to, which replaced whatever to named. It reports false, and
// changes nothing, when from and to are names of one file: rename(2) then does nothing.
func (l *Ledger) Rename(from, to string) bool {
	if from == to {
		return false
	}
	src := l.lookup(from, false)
	if dst := l.lookup(to, false); src != nil && dst != nil && src.file != nil && src.file == dst.file {
		return false
	}
	l.Unbind(to)
	if src == nil || src == &l.root {
		return true
	}
	l.detach(src)
	l.attach(src, to)
	return true
}

// Exchange records renameat2(RENAME_EXCHANGE) of a and b.
func (l *Ledger) Exchange(a, b string) {
	if a == b {
		return
	}
	na, nb := l.lookup(a, false), l.lookup(b, false)
	if na == &l.root || nb == &l.root {
		return // the root is not renamed through a mount
	}
	if na != nil {
		l.detach(na)
	}
	if nb != nil {
		l.detach(nb)
	}
	if na != nil {
		l.attach(na, b)
	}
	if nb != nil {
		l.attach(nb, a)
	}
}

// removeName takes n out of f's names, and forgets f when that leaves nothing to know.
func (l *Ledger) removeName(f *File, n *node) {
	if i := slices.Index(f.names, n); i >= 0 {
		f.names = slices.Delete(f.names, i, i+1)
	}
	l.forgetIfIdle(f)
}

// detach takes n out of its parent and prunes the parent; n's subtree is left as it is.
func (l *Ledger) detach(n *node) {
	p := n.parent
	if p == nil {
		return
	}
	delete(p.kids, n.name)
	n.parent = nil
	l.prune(p)
}

// attach puts a detached node n at rel, creating the directories on the way.
func (l *Ledger) attach(n *node, rel string) {
	dir, name := split(rel)
	p := l.lookup(dir, true)
	if old := p.kids[name]; old != nil {
		l.detach(old)
		l.detachSubtree(old)
		p = l.lookup(dir, true) // pruning old may have removed p
	}
	if p.kids == nil {
		p.kids = map[string]*node{}
	}
	n.parent, n.name = p, name
	p.kids[name] = n
	l.prune(n)
}

// detachSubtree drops every name in the detached subtree at n from its file.
func (l *Ledger) detachSubtree(n *node) {
	f, kids := n.file, n.kids
	n.parent, n.kids, n.file = nil, nil, nil
	if f != nil {
		l.removeName(f, n)
	}
	for _, k := range kids {
		l.detachSubtree(k)
	}
}

// prune removes n and its ancestors while they lead to nothing tracked.
func (l *Ledger) prune(n *node) {
	for n != nil && n != &l.root && n.file == nil && len(n.kids) == 0 {
		p := n.parent
		if p == nil {
			return // detached
		}
		delete(p.kids, n.name)
		n.parent = nil
		n = p
	}
}

// lookup returns the node at rel ("" is the root), creating the missing ones when create is set.
func (l *Ledger) lookup(rel string, create bool) *node {
	n := &l.root
	for rel != "" {
		var c string
		c, rel, _ = strings.Cut(rel, "/")
		k := n.kids[c]
		if k == nil {
			if !create {
				return nil
			}
			if n.kids == nil {
				n.kids = map[string]*node{}
			}
			k = &node{parent: n, name: c}
			n.kids[c] = k
		}
		n = k
	}
	return n
}

// path is n's name relative to the root.
func (n *node) path() string {
	var parts []string
	for ; n != nil && n.parent != nil; n = n.parent {
		parts = append(parts, n.name)
	}
	slices.Reverse(parts)
	return strings.Join(parts, "/")
}

func split(rel string) (dir, name string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

// nodes returns the number of trie nodes (for tests: the trie holds only paths to tracked files).
func (l *Ledger) nodes() int {
	var count func(n *node) int
	count = func(n *node) int {
		c := 1
		for _, k := range n.kids {
			c += count(k)
		}
		return c
	}
	return count(&l.root) - 1
}

// EachWriter calls fn for every file with writers, in no particular order. fn must not change
// the ledger.
func (l *Ledger) EachWriter(fn func(f *File)) {
	for _, f := range l.writing {
		fn(f)
	}
}

// Each calls fn for every file the ledger holds, in no particular order. fn must not change the
// ledger.
func (l *Ledger) Each(fn func(f *File)) {
	for _, f := range l.files {
		fn(f)
	}
}
