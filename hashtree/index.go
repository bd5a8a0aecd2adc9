package hashtree

import (
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
type index struct {
	chunks [][]*node // non-empty, each sorted, all names of chunk i < those of chunk i+1
	own    []bool    // own[i]: chunks[i] belongs to this index alone and may be modified in place
	epoch  uint32    // the Tree.epoch it was made in; an older index may be in a Frozen view
}

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
	ix := &index{chunks: make([][]*node, 0, len(ents)/chunkFill+1), epoch: epoch}
	for len(ents) > 0 {
		n := min(len(ents), chunkFill)
		if len(ents)-n < chunkFill/4 {
			n = len(ents) // no tiny tail chunk
		}
		ix.chunks = append(ix.chunks, newChunk(ents[:n]))
		ix.own = append(ix.own, true)
		ents = ents[n:]
	}
	return ix
}

// chunkFor returns the index of the chunk where name belongs.
func (ix *index) chunkFor(name string) int {
	ci := sort.Search(len(ix.chunks), func(j int) bool { return ix.chunks[j][0].cmpName(name) > 0 }) - 1
	return max(ci, 0)
}

// chunkForNode is chunkFor(n.name()).
func (ix *index) chunkForNode(n *node) int {
	ci := sort.Search(len(ix.chunks), func(j int) bool { return byName(ix.chunks[j][0], n) > 0 }) - 1
	return max(ci, 0)
}

func (ix *index) insert(nd *node) {
	if len(ix.chunks) == 0 {
		ix.chunks = append(ix.chunks, newChunk([]*node{nd}))
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
		case ci > 0 && len(ix.chunks[ci-1]) < chunkMax:
			if byName(nd, c[0]) < 0 {
				ci-- // nd sorts before the whole chunk: it closes the previous one
				break
			}
			c = ix.mut(ci)
			first := c[0]
			ix.chunks[ci] = slices.Delete(c, 0, 1)
			ix.chunks[ci-1] = append(ix.mut(ci-1), first)
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
}

// splitChunk splits chunk ci in two halves.
func (ix *index) splitChunk(ci int) {
	c := ix.chunks[ci]
	half := len(c) / 2
	lo, hi := newChunk(c[:half]), newChunk(c[half:])
	ix.chunks[ci] = lo
	ix.own[ci] = true
	ix.chunks = slices.Insert(ix.chunks, ci+1, hi)
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
	switch {
	case len(c) == 0:
		ix.chunks = slices.Delete(ix.chunks, ci, ci+1)
		ix.own = slices.Delete(ix.own, ci, ci+1)
	case ci+1 < len(ix.chunks) && len(c)+len(ix.chunks[ci+1]) <= chunkMax/2:
		ix.chunks[ci] = append(c, ix.chunks[ci+1]...)
		ix.chunks = slices.Delete(ix.chunks, ci+1, ci+2)
		ix.own = slices.Delete(ix.own, ci+1, ci+2)
	case ci > 0 && len(c)+len(ix.chunks[ci-1]) <= chunkMax/2:
		ix.chunks[ci-1] = append(ix.mut(ci-1), c...)
		ix.chunks = slices.Delete(ix.chunks, ci, ci+1)
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
