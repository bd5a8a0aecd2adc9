package hashtree

import (
	"encoding/binary"
	"math"
	"slices"
)

// hnode is a node of a directory's HAMT. The physical shape is canonical:
// a node whose subtree holds at most bucketSize entries (or that sits at
// maxDepth) is a leaf, any other node is internal, and an internal node's
// empty children are nil. Digests follow the logical shape over the
// contributing entries only (see refreshH), so excluded files can sit in
// the structure without changing any digest.
//
// n, nc and excl are exact at all times (updated along the path of every
// change); digest, chg and ver are caches, valid when dirty is false. A
// dirty node's ancestors, up to the tree's root, are all dirty.
type hnode struct {
	ents  []*node // leaf: the entries, sorted by name
	in    *inner  // internal: the children; nil for a leaf
	n, nc int32   // entries / contributing entries in this HAMT subtree
	// excl counts the excluded files below, subdirectories included (Diff
	// may skip only a subtree without any). The other counts of a subtree
	// are kept once per directory (ext.cnt), not in every HAMT node: a
	// million-entry directory has some 70,000 of these.
	excl   int32
	dirty  bool
	digest Digest
	chg    int64 // max ChangedAt below (entries, and everything in subdirectories)
	ver    int64 // min VerifiedAt of the files below, noFiles if none
}

// inner is an internal node's children. The children's cached digests and
// times are copied here when they are refreshed, so that refreshing a node
// reads one contiguous array instead of sixteen scattered nodes.
type inner struct {
	kid   [fanout]*hnode
	bits  uint16 // bit i: kid[i] holds contributing entries (kept exact)
	stale uint16 // bit i: kid[i] may be dirty (set whenever it is marked)
	dig   [fanout]Digest
	chg   [fanout]int64
	ver   [fanout]int64
}

func (h *hnode) leaf() bool { return h.in == nil }

func (in *inner) setBit(i int, on bool) {
	if on {
		in.bits |= 1 << i
	} else {
		in.bits &^= 1 << i
	}
}

// fixBits refreshes the contributing bits along a root-to-leaf path.
func fixBits(path []*hnode, key *[32]byte) {
	for d := 0; d+1 < len(path); d++ {
		if in := path[d].in; in != nil {
			in.setBit(nibble(key, d), path[d+1].nc > 0)
		}
	}
}

// find returns the child of x called name (key = sha256(name)). With rec
// set it marks the nodes on the way dirty and appends them to t.hpath.
func (t *Tree) find(x *ext, key *[32]byte, name string, rec bool) *node {
	h := x.root
	for d := 0; ; d++ {
		if rec {
			h.dirty = true
			t.hpath = append(t.hpath, h)
		}
		if h.leaf() {
			t.touched += touch(h.ents)
			i, ok := searchName(h.ents, name)
			if !ok {
				return nil
			}
			return h.ents[i]
		}
		i := nibble(key, d)
		if rec {
			h.in.stale |= 1 << i
		}
		h = h.in.kid[i]
		if h == nil {
			return nil
		}
	}
}

// touch reads the fields of every entry of a leaf that a search and a
// hash read, and returns nothing of use. Its loads do not depend on one
// another, so their cache misses overlap; a binary search's come one after
// the other, and in a million-entry directory, where entries are rarely in
// the cache, those were about a tenth of an update (the refresh that
// follows reads every entry of the leaf anyway).
func touch(ents []*node) uint8 {
	var s uint8
	for _, e := range ents {
		s += e.nlen + e.digest[0]
	}
	return s
}

// insertAt adds nd, which must not be present, to x (counts excepted: the
// caller applies contrib(nd) to t.hpath, to which the path is appended).
func (t *Tree) insertAt(x *ext, key *[32]byte, nd *node) {
	var c int32
	if nd.contributes() {
		c = 1
	}
	start := len(t.hpath)
	h := x.root
	d := 0
	for {
		h.dirty = true
		h.n++
		h.nc += c
		t.hpath = append(t.hpath, h)
		if h.leaf() {
			break
		}
		i := nibble(key, d)
		d++
		h.in.stale |= 1 << i
		if h.in.kid[i] == nil {
			h = &hnode{dirty: true, n: 1, nc: c, ents: []*node{nd}}
			t.hpath[len(t.hpath)-1].in.kid[i] = h
			t.hpath = append(t.hpath, h)
			fixBits(t.hpath[start:], key)
			if x.idx != nil {
				t.ownIndex(x).insert(nd)
			}
			return
		}
		h = h.in.kid[i]
	}
	i, _ := searchNode(h.ents, nd)
	if len(h.ents) == cap(h.ents) {
		// Grow to the next size class, not to twice the length: a
		// million-entry directory has some 65,000 leaves.
		h.ents = append(slices.Grow([]*node(nil), len(h.ents)+1), h.ents...)
	}
	h.ents = slices.Insert(h.ents, i, nd)
	fixBits(t.hpath[start:], key)
	if len(h.ents) > bucketSize && d < maxDepth {
		t.split(h, d)
		if h == x.root {
			// The directory just outgrew one bucket: index it by name.
			all := gather(x.root, make([]*node, 0, x.root.n))
			slices.SortFunc(all, byName)
			x.idx = buildIndex(all, t.epoch)
			return
		}
	}
	if x.idx != nil {
		t.ownIndex(x).insert(nd)
	}
}

// addEntry counts e into h (split and build).
func addEntry(h *hnode, e *node) {
	h.n++
	if e.contributes() {
		h.nc++
	}
	h.excl += exclOf(e)
}

// exclOf returns the number of excluded files that the entry e brings.
func exclOf(e *node) int32 {
	switch {
	case e.kind == KindDir:
		return int32(e.x.cnt.byStatus[StatusExcluded])
	case e.kind == KindFile && e.status == StatusExcluded:
		return 1
	}
	return 0
}

// split turns the over-full leaf h at depth d into an internal node.
func (t *Tree) split(h *hnode, d int) {
	ents := h.ents
	h.ents = nil
	h.in = new(inner)
	var nb [bucketSize + 1]uint8 // a split leaf has just outgrown bucketSize
	nibs := nb[:]
	if len(ents) > len(nb) {
		nibs = make([]uint8, len(ents))
	}
	var sizes [fanout]int
	for j, e := range ents {
		k := t.hs.keyOf(e)
		nibs[j] = uint8(nibble(&k, d))
		sizes[nibs[j]]++
	}
	for j, e := range ents {
		i := nibs[j]
		kid := h.in.kid[i]
		if kid == nil {
			kid = &hnode{dirty: true, ents: make([]*node, 0, sizes[i])}
			h.in.kid[i] = kid
		}
		kid.ents = append(kid.ents, e) // stays sorted: ents was
		addEntry(kid, e)
	}
	for i, kid := range h.in.kid {
		if kid == nil {
			continue
		}
		h.in.setBit(i, kid.nc > 0)
		h.in.stale |= 1 << i
		if len(kid.ents) > bucketSize && d+1 < maxDepth {
			t.split(kid, d+1)
		}
	}
}

// removeAt deletes the child called name from x and returns it (nil if
// absent). Counts are the caller's, as for insertAt.
func (t *Tree) removeAt(x *ext, key *[32]byte, name string) *node {
	start := len(t.hpath)
	h := x.root
	depth := 0
	for {
		t.hpath = append(t.hpath, h)
		if h.leaf() {
			break
		}
		i := nibble(key, depth)
		h.in.stale |= 1 << i
		h = h.in.kid[i]
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
	path := t.hpath[start:]
	for _, p := range path {
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
			p.in = nil
			p.ents = ents
			if d == 0 {
				x.idx = nil
			}
			t.hpath = t.hpath[:start+d+1]
			break
		}
		if d == depth-1 && h.n == 0 {
			p.in.kid[nibble(key, d)] = nil
		}
	}
	fixBits(t.hpath[start:], key)
	if x.idx != nil {
		t.ownIndex(x).remove(name)
	}
	return nd
}

// gather appends every entry under h to out, in HAMT order.
func gather(h *hnode, out []*node) []*node {
	if h.leaf() {
		return append(out, h.ents...)
	}
	for _, k := range h.in.kid {
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
	for _, k := range h.in.kid {
		if k != nil {
			out = gatherContrib(k, out)
		}
	}
	return out
}

// keyPrefix is the first 16 nibbles of a key, enough to place entries in
// any realistic directory; deeper nibbles are recomputed from the name.
func keyPrefix(k *[32]byte) uint64 { return binary.BigEndian.Uint64(k[:8]) }

func (hs *hasher) nibbleOf(e *node, prefix uint64, d int) int {
	if d < 16 {
		return int(prefix>>(60-4*d)) & 0x0f
	}
	k := hs.keyOf(e)
	return nibble(&k, d)
}

// build makes a canonical HAMT node at depth d from ents, sorted by name,
// and their key prefixes. It reorders ents and keys, using tmpE and tmpK
// (of the same length) as scratch space: a radix partition by nibble that
// keeps each group sorted by name.
func (t *Tree) build(ents []*node, keys []uint64, tmpE []*node, tmpK []uint64, d int) *hnode {
	h := &hnode{dirty: true}
	if len(ents) <= bucketSize || d >= maxDepth {
		h.ents = slices.Clone(ents) // its own array: the scratch space is shared
		for _, e := range h.ents {
			addEntry(h, e)
		}
		// Hash now, while the entries are in the cache: a million entries
		// are visited in hash order, which is random in memory.
		t.refreshH(h, d)
		return h
	}
	hs := t.hs
	var counts [fanout]int
	nibs := make([]uint8, len(ents))
	for i, e := range ents {
		nb := hs.nibbleOf(e, keys[i], d)
		nibs[i] = uint8(nb)
		counts[nb]++
	}
	var start [fanout]int
	for i := 1; i < fanout; i++ {
		start[i] = start[i-1] + counts[i-1]
	}
	pos := start
	for i, nb := range nibs {
		tmpE[pos[nb]] = ents[i]
		tmpK[pos[nb]] = keys[i]
		pos[nb]++
	}
	h.in = new(inner)
	for b := 0; b < fanout; b++ {
		if counts[b] == 0 {
			continue
		}
		lo, hi := start[b], start[b]+counts[b]
		kid := t.build(tmpE[lo:hi], tmpK[lo:hi], ents[lo:hi], keys[lo:hi], d+1)
		h.in.kid[b] = kid
		h.in.setBit(b, kid.nc > 0)
		h.in.stale |= 1 << b
		h.n += kid.n
		h.nc += kid.nc
		h.excl += kid.excl
	}
	t.refreshH(h, d)
	return h
}

// setChildren replaces the contents of the empty directory x with ents,
// which must be sorted by name without duplicates (bulk load). ents is
// used as scratch space.
// Its digests are computed on the way (the subdirectories in ents must be
// complete).
func (t *Tree) setChildren(x *ext, ents []*node) {
	hs := t.hs
	for _, e := range ents {
		c := contrib(e)
		x.cnt.add(&c, 1)
	}
	if len(ents) <= bucketSize {
		x.root = t.build(ents, nil, nil, nil, 0)
		return
	}
	x.idx = buildIndex(ents, t.epoch)
	keys := make([]uint64, len(ents))
	for i, e := range ents {
		k := hs.keyOf(e)
		keys[i] = keyPrefix(&k)
	}
	x.root = t.build(ents, keys, make([]*node, len(ents)), make([]uint64, len(ents)), 0)
}

// refreshH recomputes the stale caches under h, at depth d.
func (t *Tree) refreshH(h *hnode, d int) {
	chg, ver := int64(math.MinInt64), int64(noFiles)
	if h.leaf() {
		for _, e := range h.ents {
			if e.kind == KindDir {
				t.refreshDir(e)
			}
			c, v := times(e)
			chg, ver = max(chg, c), min(ver, v)
		}
		h.digest = t.hs.leafDigest(h.ents, int(h.nc))
	} else {
		in := h.in
		for i, k := range in.kid {
			if k == nil {
				continue
			}
			if in.stale&(1<<i) != 0 {
				if k.dirty {
					t.refreshH(k, d+1)
				}
				in.dig[i], in.chg[i], in.ver[i] = k.digest, k.chg, k.ver
			}
			chg, ver = max(chg, in.chg[i]), min(ver, in.ver[i])
		}
		in.stale = 0
		if h.nc <= bucketSize || d >= maxDepth {
			// Logically a leaf: few contributing entries under a node that
			// is split only because of excluded ones.
			ents := gatherContrib(h, make([]*node, 0, h.nc))
			slices.SortFunc(ents, byName)
			h.digest = t.hs.leafDigest(ents, len(ents))
		} else {
			h.digest = t.hs.nodeDigest(in)
		}
	}
	h.chg, h.ver = chg, ver
	h.dirty = false
}

// refreshDir brings the directory n's digest and caches up to date.
func (t *Tree) refreshDir(n *node) {
	if r := n.x.root; r.dirty {
		t.refreshH(r, 0)
		n.digest = r.digest
	}
}
