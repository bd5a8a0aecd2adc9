package hashtree

import "slices"

// hnode is a node of a directory's HAMT. The physical shape is canonical:
// a node whose subtree holds at most bucketSize entries (or that sits at
// maxDepth) is a leaf, any other node is internal, and an internal node's
// empty children are nil. Digests follow the logical shape over the
// contributing entries only (see refresh), so excluded files can sit in the
// structure without changing any digest.
type hnode struct {
	ents   []*node         // leaf: the entries, sorted by name
	kids   *[fanout]*hnode // internal: children by nibble; nil for a leaf
	n, nc  int32           // entries / contributing entries in the subtree
	dirty  bool            // digest and agg are stale
	digest Digest          // valid when !dirty
	agg    agg             // valid when !dirty
}

func (h *hnode) leaf() bool { return h.kids == nil }

// find returns the child called name (key = sha256(name)), marking every
// HAMT node on the way dirty when mark is set.
func (x *ext) find(key *[32]byte, name string, mark bool) *node {
	h := x.root
	for d := 0; ; d++ {
		if mark {
			h.dirty = true
		}
		if h.leaf() {
			i, ok := searchName(h.ents, name)
			if !ok {
				return nil
			}
			return h.ents[i]
		}
		h = h.kids[nibble(key, d)]
		if h == nil {
			return nil
		}
	}
}

// adjustNC adds delta to the contributing count on the path to key (used
// when an entry switches between excluded and not).
func (x *ext) adjustNC(key *[32]byte, delta int32) {
	h := x.root
	for d := 0; h != nil; d++ {
		h.nc += delta
		h.dirty = true
		if h.leaf() {
			return
		}
		h = h.kids[nibble(key, d)]
	}
}

// insert adds nd, which must not be present, and keeps the name index.
func (x *ext) insert(hs *hasher, key *[32]byte, nd *node) {
	var c int32
	if nd.contributes() {
		c = 1
	}
	h := x.root
	d := 0
	for {
		h.dirty = true
		h.n++
		h.nc += c
		if h.leaf() {
			break
		}
		i := nibble(key, d)
		d++
		if h.kids[i] == nil {
			h.kids[i] = &hnode{dirty: true, n: 1, nc: c, ents: []*node{nd}}
			h = nil
			break
		}
		h = h.kids[i]
	}
	if h != nil {
		i, _ := searchName(h.ents, nd.name)
		h.ents = slices.Insert(h.ents, i, nd)
		if len(h.ents) > bucketSize && d < maxDepth {
			wasRoot := h == x.root
			split(hs, h, d)
			if wasRoot {
				// The directory just outgrew one bucket: index it by name.
				all := gather(x.root, make([]*node, 0, x.root.n))
				slices.SortFunc(all, byName)
				x.idx = buildIndex(all)
				return
			}
		}
	}
	if x.idx != nil {
		x.idx.insert(nd)
	}
}

// split turns the over-full leaf h at depth d into an internal node.
func split(hs *hasher, h *hnode, d int) {
	ents := h.ents
	h.ents = nil
	h.kids = new([fanout]*hnode)
	for _, e := range ents {
		k := hs.key(e.name)
		i := nibble(&k, d)
		kid := h.kids[i]
		if kid == nil {
			kid = &hnode{dirty: true}
			h.kids[i] = kid
		}
		kid.ents = append(kid.ents, e) // stays sorted: ents was
		kid.n++
		if e.contributes() {
			kid.nc++
		}
	}
	for _, kid := range h.kids {
		if kid != nil && len(kid.ents) > bucketSize && d+1 < maxDepth {
			split(hs, kid, d+1)
		}
	}
}

// remove deletes the child called name and returns it (nil if absent).
func (x *ext) remove(key *[32]byte, name string) *node {
	var path [maxDepth + 1]*hnode
	h := x.root
	depth := 0
	for {
		path[depth] = h
		if h.leaf() {
			break
		}
		h = h.kids[nibble(key, depth)]
		if h == nil {
			return nil
		}
		depth++
	}
	i, ok := searchName(h.ents, name)
	if !ok {
		return nil
	}
	nd := h.ents[i]
	h.ents = slices.Delete(h.ents, i, i+1)
	var c int32
	if nd.contributes() {
		c = 1
	}
	for d := 0; d <= depth; d++ {
		p := path[d]
		p.dirty = true
		p.n--
		p.nc -= c
	}
	// Restore the canonical shape: the topmost internal node that now holds
	// at most bucketSize entries becomes a leaf; otherwise drop an empty leaf.
	for d := 0; d < depth; d++ {
		p := path[d]
		if p.n <= bucketSize {
			ents := gather(p, make([]*node, 0, p.n))
			slices.SortFunc(ents, byName)
			p.kids = nil
			p.ents = ents
			if d == 0 {
				x.idx = nil
			}
			break
		}
		if d == depth-1 && h.n == 0 {
			p.kids[nibble(key, d)] = nil
		}
	}
	if x.idx != nil {
		x.idx.remove(name)
	}
	return nd
}

// gather appends every entry under h to out, in HAMT order.
func gather(h *hnode, out []*node) []*node {
	if h.leaf() {
		return append(out, h.ents...)
	}
	for _, k := range h.kids {
		if k != nil {
			out = gather(k, out)
		}
	}
	return out
}

// gatherContrib appends the contributing entries under h to out.
func gatherContrib(h *hnode, out []*node) []*node {
	if h.nc == 0 {
		return out
	}
	if h.leaf() {
		for _, e := range h.ents {
			if e.contributes() {
				out = append(out, e)
			}
		}
		return out
	}
	for _, k := range h.kids {
		if k != nil {
			out = gatherContrib(k, out)
		}
	}
	return out
}

// build makes a canonical HAMT node at depth d from entries sorted by name,
// whose keys are given in the same order.
func build(ents []*node, keys [][32]byte, d int) *hnode {
	h := &hnode{dirty: true, n: int32(len(ents))}
	for _, e := range ents {
		if e.contributes() {
			h.nc++
		}
	}
	if len(ents) <= bucketSize || d >= maxDepth {
		h.ents = ents
		return h
	}
	// Stable partition by nibble keeps each group sorted by name.
	var counts [fanout]int
	for i := range keys {
		counts[nibble(&keys[i], d)]++
	}
	var start [fanout]int
	for i := 1; i < fanout; i++ {
		start[i] = start[i-1] + counts[i-1]
	}
	pe := make([]*node, len(ents))
	pk := make([][32]byte, len(keys))
	pos := start
	for i := range keys {
		b := nibble(&keys[i], d)
		pe[pos[b]] = ents[i]
		pk[pos[b]] = keys[i]
		pos[b]++
	}
	h.kids = new([fanout]*hnode)
	for b := 0; b < fanout; b++ {
		if counts[b] == 0 {
			continue
		}
		lo, hi := start[b], start[b]+counts[b]
		if hi-lo <= bucketSize {
			// Own copy, so that a later insert cannot overwrite a neighbour.
			h.kids[b] = build(slices.Clone(pe[lo:hi]), nil, d+1)
		} else {
			h.kids[b] = build(pe[lo:hi:hi], pk[lo:hi], d+1)
		}
	}
	return h
}

// setChildren replaces the contents of the empty directory x with ents,
// which must be sorted by name without duplicates (bulk load).
func (x *ext) setChildren(hs *hasher, ents []*node) {
	if len(ents) <= bucketSize {
		x.root = build(slices.Clip(ents), nil, 0)
		return
	}
	keys := make([][32]byte, len(ents))
	for i, e := range ents {
		keys[i] = hs.key(e.name)
	}
	x.root = build(ents, keys, 0)
	x.idx = buildIndex(ents)
}

// refresh recomputes the stale digests and aggregates under h, at depth d.
func (t *Tree) refreshH(h *hnode, d int) {
	var a agg
	if h.leaf() {
		for _, e := range h.ents {
			if e.kind == KindDir {
				t.refreshDir(e)
			}
			a.add(e)
		}
		h.digest = t.hs.leafDigest(h.ents)
	} else {
		for _, k := range h.kids {
			if k == nil {
				continue
			}
			if k.dirty {
				t.refreshH(k, d+1)
			}
			a.merge(&k.agg)
		}
		if h.nc <= bucketSize || d >= maxDepth {
			// Logically a leaf: few contributing entries under a node that
			// is split only because of excluded ones.
			ents := gatherContrib(h, make([]*node, 0, h.nc))
			slices.SortFunc(ents, byName)
			h.digest = t.hs.leafDigest(ents)
		} else {
			h.digest = t.hs.nodeDigest(h.kids)
		}
	}
	h.agg = a
	h.dirty = false
}

// refreshDir brings the directory n's digest and aggregates up to date.
func (t *Tree) refreshDir(n *node) {
	if r := n.x.root; r.dirty {
		t.refreshH(r, 0)
		n.digest = r.digest
	}
}
