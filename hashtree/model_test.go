package hashtree

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// modelTree pairs a Tree with the naive refModel and applies every
// operation to both.
type modelTree struct {
	t           *Tree
	m           refModel
	rootChanged int64
	clock       int64
}

func newModelTree() *modelTree { return &modelTree{t: New(), m: refModel{}} }

func (mt *modelTree) now() int64 { mt.clock += 1000; return mt.clock }

func (mt *modelTree) isDir(p string) bool {
	return p == "" || (mt.m[p] != nil && mt.m[p].Kind == KindDir)
}

// parentErr mirrors how the tree resolves the parent of p.
func (mt *modelTree) parentErr(p string) error {
	parts := strings.Split(p, "/")
	for i := 1; i < len(parts); i++ {
		q := strings.Join(parts[:i], "/")
		e := mt.m[q]
		if e == nil {
			return ErrNotFound
		}
		if e.Kind != KindDir {
			return ErrNotDir
		}
	}
	return nil
}

func (mt *modelTree) setChanged(dir string, at int64) {
	if dir == "" {
		mt.rootChanged = at
	} else {
		mt.m[dir].ChangedAt = at
	}
}

func (mt *modelTree) subtree(p string) []string {
	out := []string{p}
	for q := range mt.m {
		if strings.HasPrefix(q, p+"/") {
			out = append(out, q)
		}
	}
	return out
}

func (mt *modelTree) put(p string, e Entry) error {
	if err := mt.parentErr(p); err != nil {
		return err
	}
	if mt.isDir(p) {
		return ErrIsDir
	}
	if e.Kind == KindSymlink {
		e.Status = StatusVerified
		e.Digest = refSymlink(e.Target)
	} else {
		e.Target = ""
	}
	mt.m[p] = &e
	return nil
}

func (mt *modelTree) mkdir(p string, at int64) error {
	if err := mt.parentErr(p); err != nil {
		return err
	}
	if e := mt.m[p]; e != nil {
		if e.Kind == KindDir {
			return nil
		}
		return ErrExists
	}
	mt.m[p] = &Entry{Kind: KindDir, ChangedAt: at}
	mt.setChanged(refParent(p), at)
	return nil
}

func (mt *modelTree) remove(p string, at int64) error {
	if err := mt.parentErr(p); err != nil {
		return err
	}
	if mt.m[p] == nil {
		return ErrNotFound
	}
	for _, q := range mt.subtree(p) {
		delete(mt.m, q)
	}
	mt.setChanged(refParent(p), at)
	return nil
}

func modelRelated(a, b string) bool {
	return a == b || strings.HasPrefix(b, a+"/") || strings.HasPrefix(a, b+"/")
}

func (mt *modelTree) rename(from, to string, at int64) error {
	if from == to {
		if err := mt.parentErr(from); err != nil {
			return err
		}
		if mt.m[from] == nil {
			return ErrNotFound
		}
		return nil
	}
	if modelRelated(from, to) {
		return ErrInvalidPath
	}
	if err := mt.parentErr(from); err != nil {
		return err
	}
	if mt.m[from] == nil {
		return ErrNotFound
	}
	if err := mt.parentErr(to); err != nil {
		return err
	}
	if mt.m[to] != nil {
		for _, q := range mt.subtree(to) {
			delete(mt.m, q)
		}
	}
	moved := map[string]*Entry{}
	for _, q := range mt.subtree(from) {
		moved[to+q[len(from):]] = mt.m[q]
		delete(mt.m, q)
	}
	for q, e := range moved {
		mt.m[q] = e
	}
	mt.setChanged(refParent(from), at)
	mt.setChanged(refParent(to), at)
	mt.m[to].ChangedAt = at
	return nil
}

func (mt *modelTree) exchange(a, b string, at int64) error {
	if a != b && modelRelated(a, b) {
		return ErrInvalidPath
	}
	for _, p := range []string{a, b} {
		if err := mt.parentErr(p); err != nil {
			return err
		}
		if mt.m[p] == nil {
			return ErrNotFound
		}
	}
	if a == b {
		return nil
	}
	sa, sb := mt.subtree(a), mt.subtree(b)
	moved := map[string]*Entry{}
	for _, q := range sa {
		moved[b+q[len(a):]] = mt.m[q]
		delete(mt.m, q)
	}
	for _, q := range sb {
		moved[a+q[len(b):]] = mt.m[q]
		delete(mt.m, q)
	}
	for q, e := range moved {
		mt.m[q] = e
	}
	mt.setChanged(refParent(a), at)
	mt.setChanged(refParent(b), at)
	mt.m[a].ChangedAt = at
	mt.m[b].ChangedAt = at
	return nil
}

func sameErr(t *rapid.T, op string, got, want error) {
	t.Helper()
	if (got == nil) != (want == nil) || (want != nil && !errors.Is(got, want)) {
		t.Fatalf("%s: got error %v, want %v", op, got, want)
	}
}

var namePool = []string{"a", "b", "c", "a-b", "a.b", "sha256:00", "blobs", "z", "\xff",
	strings.Repeat("L", inlineName), strings.Repeat("L", inlineName+1), "sha512:" + strings.Repeat("0f", 64)}

func bigName(i int) string { return fmt.Sprintf("sha256:%064x", i) }

// drawPath draws a path: an existing directory (or occasionally a missing
// one) plus a name.
func (mt *modelTree) drawPath(t *rapid.T, label string) string {
	dirs := []string{""}
	for p, e := range mt.m {
		if e.Kind == KindDir {
			dirs = append(dirs, p)
		}
	}
	slices.Sort(dirs)
	dir := rapid.SampledFrom(dirs).Draw(t, label+"dir")
	name := rapid.SampledFrom(namePool).Draw(t, label+"name")
	if rapid.IntRange(0, 9).Draw(t, label+"missing") == 0 {
		name = "nodir/" + name
	}
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (mt *modelTree) drawExisting(t *rapid.T, label string) string {
	if len(mt.m) == 0 || rapid.IntRange(0, 9).Draw(t, label+"fresh") == 0 {
		return mt.drawPath(t, label)
	}
	ps := make([]string, 0, len(mt.m))
	for p := range mt.m {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return rapid.SampledFrom(ps).Draw(t, label+"existing")
}

func drawFile(t *rapid.T, at int64) Entry {
	return Entry{
		Kind:       KindFile,
		Digest:     SumBytes([]byte{byte(rapid.IntRange(0, 5).Draw(t, "content"))}),
		Status:     Status(rapid.IntRange(0, NumStatus-1).Draw(t, "status")),
		Meta:       Meta{Size: int64(rapid.IntRange(0, 1000).Draw(t, "size")), Ino: uint64(rapid.IntRange(1, 9).Draw(t, "ino"))},
		ChangedAt:  at,
		VerifiedAt: int64(rapid.IntRange(0, 3).Draw(t, "verified")) * 7,
	}
}

// step applies one random operation to both sides.
func (mt *modelTree) step(t *rapid.T) {
	at := mt.now()
	switch op := rapid.IntRange(0, 10).Draw(t, "op"); op {
	case 0, 1:
		p := mt.drawPath(t, "put")
		e := drawFile(t, at)
		sameErr(t, "put "+p, mt.t.Put(p, e), mt.put(p, e))
	case 2:
		p := mt.drawPath(t, "link")
		e := Entry{Kind: KindSymlink, Target: rapid.SampledFrom([]string{"", "x", "../y", "a/b"}).Draw(t, "target"), ChangedAt: at}
		sameErr(t, "symlink "+p, mt.t.Put(p, e), mt.put(p, e))
	case 3, 4:
		p := mt.drawPath(t, "mkdir")
		sameErr(t, "mkdir "+p, mt.t.Mkdir(p, at), mt.mkdir(p, at))
	case 5:
		p := mt.drawExisting(t, "rm")
		sameErr(t, "remove "+p, mt.t.Remove(p, at), mt.remove(p, at))
	case 6:
		from := mt.drawExisting(t, "from")
		to := mt.drawExisting(t, "to")
		sameErr(t, "rename "+from+" "+to, mt.t.Rename(from, to, at), mt.rename(from, to, at))
	case 7:
		a := mt.drawExisting(t, "xa")
		b := mt.drawExisting(t, "xb")
		sameErr(t, "exchange "+a+" "+b, mt.t.Exchange(a, b, at), mt.exchange(a, b, at))
	case 8:
		// Fill a directory well past one HAMT bucket and one index chunk.
		dir := mt.drawExisting(t, "bulk")
		if !mt.isDir(dir) {
			return
		}
		lo := rapid.IntRange(0, 2000).Draw(t, "lo")
		n := rapid.IntRange(1, 700).Draw(t, "n")
		seed := rapid.IntRange(0, 1<<20).Draw(t, "seed")
		for i := lo; i < lo+n; i++ {
			p := bigName(i)
			if dir != "" {
				p = dir + "/" + p
			}
			e := Entry{Kind: KindFile, Digest: SumBytes([]byte{byte(i)}), Status: Status((i + seed) % NumStatus),
				Meta: Meta{Size: int64(i)}, ChangedAt: at, VerifiedAt: int64((i * seed) % 3)}
			sameErr(t, "bulk put "+p, mt.t.Put(p, e), mt.put(p, e))
		}
	case 9:
		// Remove a random share of a directory's children.
		dir := mt.drawExisting(t, "thin")
		if !mt.isDir(dir) {
			return
		}
		keep := rapid.IntRange(0, 4).Draw(t, "keep")
		for i, p := range mt.m.children(dir) {
			if i%5 >= keep {
				sameErr(t, "thin "+p, mt.t.Remove(p, at), mt.remove(p, at))
			}
		}
	case 10:
		p := mt.drawExisting(t, "upd")
		st := Status(rapid.IntRange(0, NumStatus-1).Draw(t, "newstatus"))
		sz := int64(rapid.IntRange(0, 50).Draw(t, "newsize"))
		err := mt.t.Update(p, func(e *Entry) { e.Status = st; e.Meta.Size = sz; e.ChangedAt = at })
		var want error
		switch e := mt.m[p]; {
		case mt.parentErr(p) != nil:
			want = mt.parentErr(p)
		case e == nil:
			want = ErrNotFound
		case e.Kind == KindDir:
			want = ErrIsDir
		default:
			if e.Kind == KindFile {
				e.Status = st
			}
			e.Meta.Size = sz
			e.ChangedAt = at
		}
		sameErr(t, "update "+p, err, want)
	}
}

// check compares everything observable with the model.
func (mt *modelTree) check(t *rapid.T) {
	if got, want := mt.t.Len(), len(mt.m); got != want {
		t.Fatalf("Len = %d, want %d", got, want)
	}
	checkInvariants(t, mt.t)
	// Walk: order and entries.
	var want []string
	var rec func(dir string)
	rec = func(dir string) {
		for _, p := range mt.m.children(dir) {
			want = append(want, p)
			if mt.m[p].Kind == KindDir {
				rec(p)
			}
		}
	}
	rec("")
	var got []string
	err := mt.t.Walk(func(p string, e Entry) error {
		got = append(got, p)
		me := mt.m[p]
		if me == nil {
			return fmt.Errorf("walk: unexpected %q", p)
		}
		w := *me
		if w.Kind == KindDir {
			w.Digest = mt.m.digest(p)
		}
		if e != w {
			return fmt.Errorf("walk %q: got %+v, want %+v", p, e, w)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("walk order:\n got %q\nwant %q", got, want)
	}
	if got, want := mt.t.Root(), mt.m.digest(""); got != want {
		t.Fatalf("Root = %v, want %v", got, want)
	}
	// Summaries of every directory and of a few other entries.
	for _, p := range append([]string{""}, want...) {
		if p != "" && mt.m[p].Kind != KindDir && len(p)%3 != 0 {
			continue
		}
		s, ok := mt.t.Summary(p)
		if w := mt.m.summary(p, mt.rootChanged); !ok || s != w {
			t.Fatalf("Summary(%q):\n got %+v\nwant %+v", p, s, w)
		}
	}
	// List with a cursor.
	for _, dir := range append([]string{""}, want...) {
		if !mt.isDir(dir) {
			continue
		}
		kids := mt.m.children(dir)
		after := ""
		if len(kids) > 0 {
			after = refBase(kids[len(kids)/2])
			kids = kids[len(kids)/2+1:]
		}
		var names []string
		if err := mt.t.List(dir, after, func(name string, _ Entry) bool { names = append(names, name); return true }); err != nil {
			t.Fatal(err)
		}
		var wn []string
		for _, k := range kids {
			wn = append(wn, refBase(k))
		}
		if !slices.Equal(names, wn) {
			t.Fatalf("List(%q, %q) = %q, want %q", dir, after, names, wn)
		}
	}
}

// rebuild builds a fresh tree holding the model's final state, inserting in
// a random order.
func (mt *modelTree) rebuild(t *rapid.T) *Tree {
	ps := make([]string, 0, len(mt.m))
	for p := range mt.m {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	perm := rapid.Permutation(ps).Draw(t, "order")
	nt := New()
	for _, p := range perm {
		e := mt.m[p]
		if err := nt.MkdirAll(refParent(p), 1); err != nil {
			t.Fatal(err)
		}
		if e.Kind == KindDir {
			if err := nt.MkdirAll(p, 1); err != nil {
				t.Fatal(err)
			}
		} else if err := nt.Put(p, *e); err != nil {
			t.Fatal(err)
		}
	}
	return nt
}

func TestModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		mt := newModelTree()
		n := rapid.IntRange(1, 60).Draw(t, "steps")
		for i := 0; i < n; i++ {
			mt.step(t)
		}
		mt.check(t)
		nt := mt.rebuild(t)
		if nt.Root() != mt.t.Root() {
			t.Fatalf("rebuilt Root differs")
		}
		checkInvariants(t, nt)
		a, _ := mt.t.Summary("")
		b, _ := nt.Summary("")
		a.ChangedAt, b.ChangedAt = 0, 0
		if a != b {
			t.Fatalf("rebuilt Summary differs:\n%+v\n%+v", a, b)
		}
	})
}

// checkInvariants verifies the canonical HAMT shape, counts, order and the
// name index of every directory.
func checkInvariants(t interface{ Fatalf(string, ...any) }, tr *Tree) {
	hs := newHasher()
	var count int64
	var dir func(d *node, path string) int64
	dir = func(d *node, path string) int64 {
		var total int64
		var all []*node
		var hn func(h *hnode, depth int, prefix []int) (n, nc int32)
		hn = func(h *hnode, depth int, prefix []int) (n, nc int32) {
			if h.leaf() {
				for i, e := range h.ents {
					if i > 0 && h.ents[i-1].name() >= e.name() {
						t.Fatalf("%q: bucket not sorted", path)
					}
					k := hs.key(e.name())
					for dd, nb := range prefix {
						if nibble(&k, dd) != nb {
							t.Fatalf("%q: %q in the wrong bucket", path, e.name())
						}
					}
					n++
					if e.contributes() {
						nc++
					}
					all = append(all, e)
				}
				if depth < maxDepth && depth > 0 && n == 0 {
					t.Fatalf("%q: empty non-root leaf", path)
				}
			} else {
				for i, k := range h.in.kid {
					if k != nil {
						a, b := hn(k, depth+1, append(slices.Clip(prefix), i))
						n += a
						nc += b
						if k.dirty && h.in.stale&(1<<i) == 0 {
							t.Fatalf("%q: dirty child %d not flagged stale", path, i)
						}
						if on := h.in.bits&(1<<i) != 0; on != (b > 0) {
							t.Fatalf("%q: contributing bit %d is %v with %d contributing entries", path, i, on, b)
						}
					} else if h.in.bits&(1<<i) != 0 {
						t.Fatalf("%q: contributing bit %d set for an empty child", path, i)
					}
				}
				if n <= bucketSize {
					t.Fatalf("%q: internal node with %d entries", path, n)
				}
			}
			if n != h.n || nc != h.nc {
				t.Fatalf("%q: counts %d/%d, cached %d/%d", path, n, nc, h.n, h.nc)
			}
			var c counts
			for _, e := range gather(h, nil) {
				ec := contrib(e)
				c.add(&ec, 1)
			}
			if int64(h.excl) != c.byStatus[StatusExcluded] {
				t.Fatalf("%q: %d excluded files below, cached %d", path, c.byStatus[StatusExcluded], h.excl)
			}
			if depth == 0 && c != *d.x.cnt {
				t.Fatalf("%q: recursive counts %+v, cached %+v", path, c, *d.x.cnt)
			}
			if h.leaf() && n > bucketSize && depth < maxDepth {
				t.Fatalf("%q: over-full leaf", path)
			}
			return n, nc
		}
		hn(d.x.root, 0, nil)
		slices.SortFunc(all, byName)
		if (d.x.idx != nil) != !d.x.root.leaf() {
			t.Fatalf("%q: index present=%v with leaf root=%v", path, d.x.idx != nil, d.x.root.leaf())
		}
		var listed []*node
		d.x.ascend("", func(n *node) bool { listed = append(listed, n); return true })
		if !slices.Equal(all, listed) {
			t.Fatalf("%q: name index disagrees with the HAMT (%d vs %d)", path, len(listed), len(all))
		}
		if d.x.idx != nil {
			ix := d.x.idx
			if len(ix.heads) != len(ix.chunks) || len(ix.own) != len(ix.chunks) {
				t.Fatalf("%q: %d chunks, %d heads, %d ownership flags", path, len(ix.chunks), len(ix.heads), len(ix.own))
			}
			for i, c := range ix.chunks {
				if len(c) == 0 || len(c) > chunkMax {
					t.Fatalf("%q: chunk of %d", path, len(c))
				}
				if ix.heads[i] != c[0].head() {
					t.Fatalf("%q: chunk %d's head is stale", path, i)
				}
			}
		}
		for _, e := range all {
			total++
			if e.kind == KindDir {
				total += dir(e, path+"/"+e.name())
			}
		}
		if total != d.x.total() {
			t.Fatalf("%q: total %d, cached %d", path, total, d.x.total())
		}
		return total
	}
	count = dir(tr.root, "")
	if count != tr.count {
		t.Fatalf("count %d, cached %d", count, tr.count)
	}
}
