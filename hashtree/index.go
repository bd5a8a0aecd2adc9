package hashtree

import (
	"encoding/binary"
	"slices"
	"sort"
)

// Chunk sizes of the name index.
const (
	chunkMax  = 512 // a chunk that grows past this is split in two
	chunkFill = 384 // chunk size when an index is built in bulk
)

// index keeps the children of a large directory in name order, for List,
// Walk and snapshots (the HAMT is in hash order). It is a sorted list of
// sorted chunks: finding a name is two binary searches, an insert or a
// delete moves at most chunkMax pointers, and a split or merge moves one
// chunk header per chunkMax/2 entries.
//
// The search for a name's chunk runs over heads, the first bytes of each
// chunk's first name kept side by side, and looks at a chunk's first entry
// only where those bytes tie: in a million-entry directory the search over
// entries took two dozen cache misses (a chunk's array, then its first
// node, at each step), about 2 µs of every update there.
type index struct {
	chunks [][]*node // non-empty, each sorted, all names of chunk i < those of chunk i+1
	heads  []head    // heads[i] = headOf(first name of chunks[i]); kept exact
	own    []bool    // own[i]: chunks[i] belongs to this index alone and may be modified in place
	epoch  uint32    // the Tree.epoch it was made in; an older index may be in a Frozen view
}

// head is the first 16 bytes of a name, zero-padded, as two big-endian
// words: heads compare as the names' prefixes do, and since a name holds
// no NUL, a smaller head means a smaller name.
type head struct{ hi, lo uint64 }

func (a head) cmp(b head) int {
	switch {
	case a.hi != b.hi:
		if a.hi < b.hi {
			return -1
		}
		return 1
	case a.lo != b.lo:
		if a.lo < b.lo {
			return -1
		}
		return 1
	}
	return 0
}

func headOf(name string) head {
	var b [16]byte
	copy(b[:], name)
	return head{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (n *node) head() head {
	var b [blobNameLen]byte
	return headOf(n.view(&b))
}

// fixHead refreshes heads[ci] after chunk ci's first entry may have changed.
func (ix *index) fixHead(ci int) { ix.heads[ci] = ix.chunks[ci][0].head() }

// mut returns chunk ci, copied first unless this index owns it.
func (ix *index) mut(ci int) []*node {
	if !ix.own[ci] {
		ix.chunks[ci] = newChunk(ix.chunks[ci])
		ix.own[ci] = true
	}
	return ix.chunks[ci]
}

// replace puts c in place of the entry n, which has the same name.
func (ix *index) replace(n, c *node) {
	ci := ix.chunkForNode(n)
	if i := slices.Index(ix.chunks[ci], n); i >= 0 {
		ix.mut(ci)[i] = c
	}
}

func newChunk(ents []*node) []*node {
	c := make([]*node, len(ents), chunkMax) // 512 pointers: exactly one 4 KiB size class
	copy(c, ents)
	return c
}

// buildIndex indexes ents, which must be sorted by name (ents is not kept).
func buildIndex(ents []*node, epoch uint32) *index {
	nc := len(ents)/chunkFill + 1
	ix := &index{chunks: make([][]*node, 0, nc), heads: make([]head, 0, nc), epoch: epoch}
	for len(ents) > 0 {
		n := min(len(ents), chunkFill)
		if len(ents)-n < chunkFill/4 {
			n = len(ents) // no tiny tail chunk
		}
		ix.chunks = append(ix.chunks, newChunk(ents[:n]))
		ix.heads = append(ix.heads, ents[0].head())
		ix.own = append(ix.own, true)
		ents = ents[n:]
	}
	return ix
}

// chunkFor returns the index of the chunk where name belongs: the last
// one whose first name is at most name, or 0.
func (ix *index) chunkFor(name string) int {
	lo, hi := ix.tied(headOf(name))
	ci := lo + sort.Search(hi-lo, func(j int) bool { return ix.chunks[lo+j][0].cmpName(name) > 0 }) - 1
	return max(ci, 0)
}

// chunkForNode is chunkFor(n.name()).
func (ix *index) chunkForNode(n *node) int {
	lo, hi := ix.tied(n.head())
	ci := lo + sort.Search(hi-lo, func(j int) bool { return byName(ix.chunks[lo+j][0], n) > 0 }) - 1
	return max(ci, 0)
}

// tied returns the range of chunks whose head is h: those before it start
// with a smaller name than any name with that head, those after with a
// larger one.
func (ix *index) tied(h head) (lo, hi int) {
	hs := ix.heads
	hi = sort.Search(len(hs), func(j int) bool { return hs[j].cmp(h) > 0 })
	lo = sort.Search(hi, func(j int) bool { return hs[j].cmp(h) >= 0 })
	return lo, hi
}

func (ix *index) insert(nd *node) {
	if len(ix.chunks) == 0 {
		ix.chunks = append(ix.chunks, newChunk([]*node{nd}))
		ix.heads = append(ix.heads, nd.head())
		ix.own = append(ix.own, true)
		return
	}
	ci := ix.chunkForNode(nd)
	if c := ix.chunks[ci]; len(c) == chunkMax {
		// A full chunk first hands an entry to a neighbour with room, as a
		// B*-tree does: chunks split only when their neighbours are full
		// too, so they stay fuller (a pointer per entry is most of what the
		// index costs).
		switch {
		case ci+1 < len(ix.chunks) && len(ix.chunks[ci+1]) < chunkMax:
			if byName(c[len(c)-1], nd) < 0 {
				ci++ // nd sorts after the whole chunk: it opens the next one
				break
			}
			c = ix.mut(ci)
			last := c[len(c)-1]
			ix.chunks[ci] = c[:len(c)-1]
			ix.chunks[ci+1] = slices.Insert(ix.mut(ci+1), 0, last)
			ix.fixHead(ci + 1)
		case ci > 0 && len(ix.chunks[ci-1]) < chunkMax:
			if byName(nd, c[0]) < 0 {
				ci-- // nd sorts before the whole chunk: it closes the previous one
				break
			}
			c = ix.mut(ci)
			first := c[0]
			ix.chunks[ci] = slices.Delete(c, 0, 1)
			ix.chunks[ci-1] = append(ix.mut(ci-1), first)
			ix.fixHead(ci)
		default:
			ix.splitChunk(ci)
			if byName(ix.chunks[ci+1][0], nd) < 0 {
				ci++
			}
		}
	}
	c := ix.mut(ci)
	i, _ := searchNode(c, nd)
	ix.chunks[ci] = slices.Insert(c, i, nd)
	if i == 0 {
		ix.fixHead(ci)
	}
}

// splitChunk splits chunk ci in two halves.
func (ix *index) splitChunk(ci int) {
	c := ix.chunks[ci]
	half := len(c) / 2
	lo, hi := newChunk(c[:half]), newChunk(c[half:])
	ix.chunks[ci] = lo
	ix.own[ci] = true
	ix.chunks = slices.Insert(ix.chunks, ci+1, hi)
	ix.heads = slices.Insert(ix.heads, ci+1, hi[0].head())
	ix.own = slices.Insert(ix.own, ci+1, true)
}

func (ix *index) remove(name string) {
	if len(ix.chunks) == 0 {
		return
	}
	ci := ix.chunkFor(name)
	i, ok := searchName(ix.chunks[ci], name)
	if !ok {
		return
	}
	c := slices.Delete(ix.mut(ci), i, i+1)
	ix.chunks[ci] = c
	if i == 0 && len(c) > 0 {
		ix.fixHead(ci)
	}
	switch {
	case len(c) == 0:
		ix.chunks = slices.Delete(ix.chunks, ci, ci+1)
		ix.heads = slices.Delete(ix.heads, ci, ci+1)
		ix.own = slices.Delete(ix.own, ci, ci+1)
	case ci+1 < len(ix.chunks) && len(c)+len(ix.chunks[ci+1]) <= chunkMax/2:
		ix.chunks[ci] = append(c, ix.chunks[ci+1]...)
		ix.chunks = slices.Delete(ix.chunks, ci+1, ci+2)
		ix.heads = slices.Delete(ix.heads, ci+1, ci+2)
		ix.own = slices.Delete(ix.own, ci+1, ci+2)
	case ci > 0 && len(c)+len(ix.chunks[ci-1]) <= chunkMax/2:
		ix.chunks[ci-1] = append(ix.mut(ci-1), c...)
		ix.chunks = slices.Delete(ix.chunks, ci, ci+1)
		ix.heads = slices.Delete(ix.heads, ci, ci+1)
		ix.own = slices.Delete(ix.own, ci, ci+1)
	}
}

// ascend calls fn for the entries named strictly after `after` ("" = all),
// in name order, until fn returns false; it reports whether fn never did.
func (ix *index) ascend(after string, fn func(*node) bool) bool {
	ci, i := 0, 0
	if after != "" && len(ix.chunks) > 0 {
		ci = ix.chunkFor(after)
		i = sort.Search(len(ix.chunks[ci]), func(k int) bool { return ix.chunks[ci][k].cmpName(after) > 0 })
	}
	for ; ci < len(ix.chunks); ci++ {
		c := ix.chunks[ci]
		for ; i < len(c); i++ {
			if !fn(c[i]) {
				return false
			}
		}
		i = 0
	}
	return true
}

// ascendDir iterates the children of directory x in name order.
func (x *ext) ascend(after string, fn func(*node) bool) bool {
	if x.idx != nil {
		return x.idx.ascend(after, fn)
	}
	ents := x.root.ents
	i := 0
	if after != "" {
		i = sort.Search(len(ents), func(k int) bool { return ents[k].cmpName(after) > 0 })
	}
	for ; i < len(ents); i++ {
		if !fn(ents[i]) {
			return false
		}
	}
	return true
}
