package hashtree

import (
	"crypto/sha256"
	"io"
	"sort"
	"strings"
)

// Tree is the Merkle tree. The zero value is not usable; call New.
//
// Interim naive implementation: a flat map of paths. It is replaced by the
// HAMT-based one; the API does not change.
type Tree struct {
	m           map[string]*Entry // every entry but the root
	rootChanged int64
}

// New returns an empty tree (just the root directory).
func New() *Tree { return &Tree{m: map[string]*Entry{}} }

func parent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func (t *Tree) isDir(p string) bool {
	if p == "" {
		return true
	}
	e := t.m[p]
	return e != nil && e.Kind == KindDir
}

func (t *Tree) touch(p string, at int64) {
	if p == "" {
		t.rootChanged = at
		return
	}
	if e := t.m[p]; e != nil {
		e.ChangedAt = at
	}
}

func (t *Tree) Put(p string, e Entry) error {
	if !ValidPath(p) || p == "" {
		return &PathError{"put", p, ErrInvalidPath}
	}
	if e.Kind != KindFile && e.Kind != KindSymlink {
		return &PathError{"put", p, ErrInvalidEntry}
	}
	pp := parent(p)
	if !t.isDir(pp) {
		if pp != "" && t.m[pp] == nil {
			return &PathError{"put", p, ErrNotFound}
		}
		return &PathError{"put", p, ErrNotDir}
	}
	if old := t.m[p]; old != nil && old.Kind == KindDir {
		return &PathError{"put", p, ErrIsDir}
	}
	if e.Kind == KindSymlink {
		e.Digest = symlinkDigest(e.Target)
		e.Status = StatusVerified
	} else {
		e.Target = ""
	}
	t.m[p] = &e
	return nil
}

func (t *Tree) Update(p string, fn func(e *Entry)) error {
	e := t.m[p]
	if e == nil {
		return &PathError{"update", p, ErrNotFound}
	}
	if e.Kind == KindDir {
		return &PathError{"update", p, ErrIsDir}
	}
	c := *e
	fn(&c)
	if c.Kind != e.Kind {
		return &PathError{"update", p, ErrInvalidEntry}
	}
	if c.Kind == KindSymlink {
		c.Digest = symlinkDigest(c.Target)
		c.Status = StatusVerified
	}
	*e = c
	return nil
}

func (t *Tree) Mkdir(p string, changedAt int64) error {
	if !ValidPath(p) {
		return &PathError{"mkdir", p, ErrInvalidPath}
	}
	if t.isDir(p) {
		return nil
	}
	if t.m[p] != nil {
		return &PathError{"mkdir", p, ErrExists}
	}
	pp := parent(p)
	if !t.isDir(pp) {
		if t.m[pp] == nil {
			return &PathError{"mkdir", p, ErrNotFound}
		}
		return &PathError{"mkdir", p, ErrNotDir}
	}
	t.m[p] = &Entry{Kind: KindDir, ChangedAt: changedAt}
	t.touch(pp, changedAt)
	return nil
}

func (t *Tree) MkdirAll(p string, changedAt int64) error {
	if !ValidPath(p) {
		return &PathError{"mkdir", p, ErrInvalidPath}
	}
	if p == "" {
		return nil
	}
	parts := strings.Split(p, "/")
	for i := range parts {
		if err := t.Mkdir(strings.Join(parts[:i+1], "/"), changedAt); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tree) under(p string) []string {
	var out []string
	pre := p + "/"
	for k := range t.m {
		if strings.HasPrefix(k, pre) {
			out = append(out, k)
		}
	}
	return out
}

func (t *Tree) Remove(p string, changedAt int64) error {
	if !ValidPath(p) || p == "" {
		return &PathError{"remove", p, ErrInvalidPath}
	}
	if t.m[p] == nil {
		return &PathError{"remove", p, ErrNotFound}
	}
	for _, k := range t.under(p) {
		delete(t.m, k)
	}
	delete(t.m, p)
	t.touch(parent(p), changedAt)
	return nil
}

func (t *Tree) Rename(from, to string, changedAt int64) error {
	if !ValidPath(from) || !ValidPath(to) || from == "" || to == "" || strings.HasPrefix(to+"/", from+"/") {
		return &PathError{"rename", from, ErrInvalidPath}
	}
	if t.m[from] == nil {
		return &PathError{"rename", from, ErrNotFound}
	}
	if !t.isDir(parent(to)) {
		return &PathError{"rename", to, ErrNotDir}
	}
	if t.m[to] != nil {
		_ = t.Remove(to, changedAt)
	}
	for _, k := range t.under(from) {
		t.m[to+k[len(from):]] = t.m[k]
		delete(t.m, k)
	}
	t.m[to] = t.m[from]
	delete(t.m, from)
	if t.m[to].Kind == KindDir {
		t.m[to].ChangedAt = changedAt
	}
	t.touch(parent(from), changedAt)
	t.touch(parent(to), changedAt)
	return nil
}

func (t *Tree) Exchange(a, b string, changedAt int64) error {
	if !ValidPath(a) || !ValidPath(b) || a == "" || b == "" || strings.HasPrefix(a+"/", b+"/") || strings.HasPrefix(b+"/", a+"/") {
		return &PathError{"exchange", a, ErrInvalidPath}
	}
	if t.m[a] == nil || t.m[b] == nil {
		return &PathError{"exchange", a, ErrNotFound}
	}
	tmp := map[string]*Entry{}
	for _, k := range append(t.under(a), a) {
		tmp[b+k[len(a):]] = t.m[k]
		delete(t.m, k)
	}
	for _, k := range append(t.under(b), b) {
		t.m[a+k[len(b):]] = t.m[k]
		delete(t.m, k)
	}
	for k, v := range tmp {
		t.m[k] = v
	}
	t.touch(parent(a), changedAt)
	t.touch(parent(b), changedAt)
	return nil
}

func (t *Tree) children(dir string) []string {
	var out []string
	for k := range t.m {
		if k != "" && parent(k) == dir {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (t *Tree) dirDigest(p string) Digest {
	h := sha256.New()
	h.Write([]byte("trowfs-naive-dir\x00"))
	for _, c := range t.children(p) {
		e := t.m[c]
		if e.Kind == KindFile && e.Status == StatusExcluded {
			continue
		}
		d := e.Digest
		if e.Kind == KindDir {
			d = t.dirDigest(c)
		}
		name := c[len(c)-len(c[strings.LastIndexByte(c, '/')+1:]):]
		h.Write([]byte(name))
		h.Write([]byte{0, byte(e.Kind)})
		h.Write(d[:])
	}
	var d Digest
	h.Sum(d[:0])
	return d
}

func symlinkDigest(target string) Digest {
	return SumBytes([]byte("trowfs-naive-symlink\x00" + target))
}

func (t *Tree) Get(p string) (Entry, bool) {
	if !ValidPath(p) {
		return Entry{}, false
	}
	if p == "" {
		return Entry{Kind: KindDir, Digest: t.dirDigest(""), ChangedAt: t.rootChanged}, true
	}
	e := t.m[p]
	if e == nil {
		return Entry{}, false
	}
	c := *e
	if c.Kind == KindDir {
		c.Digest = t.dirDigest(p)
	}
	return c, true
}

func (t *Tree) Summary(p string) (Summary, bool) {
	e, ok := t.Get(p)
	if !ok {
		return Summary{}, false
	}
	var s Summary
	add := func(e *Entry) {
		switch e.Kind {
		case KindFile:
			s.Files++
			s.Bytes += e.Meta.Size
			s.ByStatus[e.Status]++
		case KindDir:
			s.Dirs++
		case KindSymlink:
			s.Symlinks++
		}
		s.ChangedAt = max(s.ChangedAt, e.ChangedAt)
	}
	s.Digest = e.Digest
	s.ChangedAt = e.ChangedAt
	if e.Kind != KindDir {
		add(&e)
		if e.Kind == KindFile {
			s.VerifiedAt = e.VerifiedAt
		}
		return s, true
	}
	first := true
	for k, v := range t.m {
		if p == "" || strings.HasPrefix(k, p+"/") {
			add(v)
			if v.Kind == KindFile {
				if first || v.VerifiedAt == 0 || (s.VerifiedAt != 0 && v.VerifiedAt < s.VerifiedAt) {
					s.VerifiedAt = v.VerifiedAt
				}
				first = false
			}
		}
	}
	return s, true
}

func (t *Tree) Root() Digest { return t.dirDigest("") }

func (t *Tree) Len() int { return len(t.m) }

func (t *Tree) List(dir, after string, fn func(name string, e Entry) bool) error {
	if !ValidPath(dir) {
		return &PathError{"list", dir, ErrInvalidPath}
	}
	if !t.isDir(dir) {
		if t.m[dir] == nil {
			return &PathError{"list", dir, ErrNotFound}
		}
		return &PathError{"list", dir, ErrNotDir}
	}
	for _, c := range t.children(dir) {
		name := c[strings.LastIndexByte(c, '/')+1:]
		if name <= after {
			continue
		}
		e, _ := t.Get(c)
		if !fn(name, e) {
			return nil
		}
	}
	return nil
}

func (t *Tree) Walk(fn func(p string, e Entry) error) error {
	var rec func(dir string) error
	rec = func(dir string) error {
		for _, c := range t.children(dir) {
			e, _ := t.Get(c)
			if err := fn(c, e); err != nil {
				return err
			}
			if e.Kind == KindDir {
				if err := rec(c); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return rec("")
}

// Diff reports every path whose entry differs between a and b.
func Diff(a, b *Tree, fn func(Change) error) error {
	keys := map[string]bool{}
	for k := range a.m {
		keys[k] = true
	}
	for k := range b.m {
		keys[k] = true
	}
	var ks []string
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		ea, oka := a.Get(k)
		eb, okb := b.Get(k)
		if oka && okb && ea.Kind == eb.Kind && ea.Digest == eb.Digest && ea.Target == eb.Target {
			continue
		}
		c := Change{Path: k}
		if oka {
			c.Old = &ea
		}
		if okb {
			c.New = &eb
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

// WriteSnapshot is not yet implemented in the interim version.
func WriteSnapshot(w io.Writer, t *Tree, meta map[string]string) error {
	return ErrSnapshotVersion
}

// ReadSnapshot is not yet implemented in the interim version.
func ReadSnapshot(r io.Reader) (*Tree, map[string]string, error) {
	return nil, nil, ErrSnapshotVersion
}
