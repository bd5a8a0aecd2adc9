package hashtree

import (
	"slices"
)

// Diff reports every path whose entry differs between a and b (in kind,
// digest or symlink target; Meta, Status and times are ignored), in Walk
// order. Old is a's entry and New is b's; nil means absent on that side. A
// subtree present on one side only is reported as its root followed by
// every entry under it.
//
// Diff descends only into directories, and inside a large directory only
// into HAMT nodes, whose digests differ. Excluded files do not enter
// digests, so a subtree holding excluded files on either side is always
// descended into; that keeps Diff exact for them too.
//
// A non-nil error from fn stops Diff and is returned. fn must not modify
// either tree; a and b may be the same tree.
func Diff(a, b *Tree, fn func(Change) error) error {
	a.refreshDir(a.root)
	b.refreshDir(b.root)
	d := &differ{fn: fn}
	return d.dir(a.root, b.root, "")
}

type differ struct {
	fn      func(Change) error
	visited int // entries compared one by one (tests check that Diff skips)
}

// pair is one name of a directory with its node on each side (nil = absent).
type pair struct{ a, b *node }

func (p pair) node() *node {
	if p.a != nil {
		return p.a
	}
	return p.b
}

func (p pair) name() string { return p.node().name() }

func excluded(h *hnode) bool { return h.excl > 0 }

// sameSubtree reports whether two HAMT nodes (or directories) at the same
// position hold the same entries, judging by digests alone.
func sameSubtree(ha, hb *hnode) bool {
	return ha.digest == hb.digest && !excluded(ha) && !excluded(hb)
}

func differs(a, b *node) bool {
	if a == nil || b == nil || a.kind != b.kind || a.digest != b.digest {
		return true
	}
	return a.kind == KindSymlink && a.x.target != b.x.target
}

func entryPtr(n *node) *Entry {
	if n == nil {
		return nil
	}
	e := n.entry()
	return &e
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}

// dir diffs two directories at path prefix.
func (d *differ) dir(da, db *node, prefix string) error {
	if sameSubtree(da.x.root, db.x.root) {
		return nil
	}
	pairs := d.hamt(da.x.root, db.x.root, nil)
	slices.SortFunc(pairs, func(x, y pair) int { return byName(x.node(), y.node()) })
	for _, p := range pairs {
		path := joinPath(prefix, p.name())
		if differs(p.a, p.b) {
			if err := d.fn(Change{Path: path, Old: entryPtr(p.a), New: entryPtr(p.b)}); err != nil {
				return err
			}
		}
		aDir := p.a != nil && p.a.kind == KindDir
		bDir := p.b != nil && p.b.kind == KindDir
		var err error
		switch {
		case aDir && bDir:
			err = d.dir(p.a, p.b, path)
		case aDir:
			err = d.oneSide(p.a, path, true)
		case bDir:
			err = d.oneSide(p.b, path, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// oneSide reports everything under the directory n, present on one side only.
func (d *differ) oneSide(n *node, prefix string, old bool) error {
	var err error
	n.x.ascend("", func(c *node) bool {
		path := joinPath(prefix, c.name())
		ch := Change{Path: path}
		if old {
			ch.Old = entryPtr(c)
		} else {
			ch.New = entryPtr(c)
		}
		if err = d.fn(ch); err != nil {
			return false
		}
		if c.kind == KindDir {
			err = d.oneSide(c, path, old)
		}
		return err == nil
	})
	return err
}

// hamt appends to out the names under two HAMT nodes at the same position
// that differ or that lead to differences further down.
func (d *differ) hamt(ha, hb *hnode, out []pair) []pair {
	switch {
	case ha == nil && hb == nil:
		return out
	case ha != nil && hb != nil:
		if sameSubtree(ha, hb) {
			return out
		}
		if !ha.leaf() && !hb.leaf() {
			for i := range ha.in.kid {
				out = d.hamt(ha.in.kid[i], hb.in.kid[i], out)
			}
			return out
		}
	}
	var ea, eb []*node
	if ha != nil {
		ea = gather(ha, nil)
		slices.SortFunc(ea, byName)
	}
	if hb != nil {
		eb = gather(hb, nil)
		slices.SortFunc(eb, byName)
	}
	d.visited += len(ea) + len(eb)
	i, j := 0, 0
	for i < len(ea) || j < len(eb) {
		var p pair
		switch {
		case j == len(eb) || (i < len(ea) && byName(ea[i], eb[j]) < 0):
			p.a = ea[i]
			i++
		case i == len(ea) || byName(eb[j], ea[i]) < 0:
			p.b = eb[j]
			j++
		default:
			p.a, p.b = ea[i], eb[j]
			i++
			j++
			if !differs(p.a, p.b) && (p.a.kind != KindDir || sameSubtree(p.a.x.root, p.b.x.root)) {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}
