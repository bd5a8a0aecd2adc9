package crdt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// Domain-separation tags of the index node digests (docs/peers.md, "Encoding").
const (
	tagLeaf  = "trowfs.peers.leaf.v1\x00"
	tagInner = "trowfs.peers.node.v1\x00"
)

// Digest is a SHA-256 value: the state root and every Merkle node digest.
type Digest [32]byte

// Fanout is the number of children of an inner index node: one hex nibble of the key hash.
const Fanout = 16

// maxDepth is the number of nibbles in a key hash: a node at this depth is always a leaf.
const maxDepth = 64

// Path names a node of the Merkle index: a string of hex nibbles of sha256(key encoding); "" is the root.
type Path string

// LeafRef is one register as a leaf of the index: the hash of its key and the hash of its entry.
type LeafRef struct {
	KeyHash   Digest
	EntryHash Digest
}

// Summary describes one index node: its digest and either its 16 children's digests (an inner node)
// or its leaves (a node with at most LeafMax registers).
type Summary struct {
	Path     Path
	Count    int
	Digest   Digest
	Children []Digest // len 16 for an inner node; nil for a leaf node
	Leaves   []LeafRef
}

// LeafMax is the most registers a leaf node holds before it splits into 16 children.
const LeafMax = 16

func nibble(h *Digest, depth int) int {
	b := h[depth>>1]
	if depth&1 == 0 {
		return int(b >> 4)
	}
	return int(b & 0x0f)
}

const hexDigits = "0123456789abcdef"

// nibbleOf returns the value of a path character, or -1.
func nibbleOf(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// Valid reports whether p is a well-formed path: at most 64 lower-case hex nibbles.
func (p Path) Valid() bool {
	if len(p) > maxDepth {
		return false
	}
	for i := 0; i < len(p); i++ {
		if nibbleOf(p[i]) < 0 {
			return false
		}
	}
	return true
}

// Child returns the path of p's i-th child.
func (p Path) Child(i int) Path { return p + Path(hexDigits[i]) }

// hasPrefix reports whether key hash h lies under path p.
func hasPrefix(h *Digest, p Path) bool {
	for i := 0; i < len(p); i++ {
		if nibble(h, i) != nibbleOf(p[i]) {
			return false
		}
	}
	return true
}

// inode is one node of the index. A node is inner exactly when more than LeafMax registers lie
// under it (and it is above maxDepth), so the shape depends only on the register set. Digests are
// recomputed lazily: an update marks the path from the root to the changed leaf dirty.
type inode struct {
	count  int
	dirty  bool
	digest Digest
	kids   *[Fanout]*inode // inner node; nil for a leaf
	leaves []LeafRef       // leaf node: sorted by KeyHash
}

func cmpRef(a, b LeafRef) int { return bytes.Compare(a.KeyHash[:], b.KeyHash[:]) }

func findRef(refs []LeafRef, kh Digest) (int, bool) {
	return slices.BinarySearchFunc(refs, kh, func(r LeafRef, k Digest) int { return bytes.Compare(r.KeyHash[:], k[:]) })
}

// put sets the entry hash of kh under n; it reports whether kh is new.
func (n *inode) put(depth int, ref LeafRef) bool {
	n.dirty = true
	if n.kids != nil {
		i := nibble(&ref.KeyHash, depth)
		k := n.kids[i]
		if k == nil {
			k = &inode{}
			n.kids[i] = k
		}
		added := k.put(depth+1, ref)
		if added {
			n.count++
		}
		return added
	}
	i, found := findRef(n.leaves, ref.KeyHash)
	if found {
		n.leaves[i] = ref
		return false
	}
	n.leaves = slices.Insert(n.leaves, i, ref)
	n.count++
	if n.count > LeafMax && depth < maxDepth {
		n.split(depth)
	}
	return true
}

func (n *inode) split(depth int) {
	n.kids = new([Fanout]*inode)
	for _, r := range n.leaves {
		i := nibble(&r.KeyHash, depth)
		if n.kids[i] == nil {
			n.kids[i] = &inode{dirty: true}
		}
		k := n.kids[i]
		k.leaves = append(k.leaves, r) // stays sorted
		k.count++
	}
	n.leaves = nil
	for _, k := range n.kids {
		if k != nil && k.count > LeafMax {
			k.split(depth + 1)
		}
	}
}

// del removes kh from under n; it reports whether it was there.
func (n *inode) del(depth int, kh Digest) bool {
	if n.kids != nil {
		i := nibble(&kh, depth)
		k := n.kids[i]
		if k == nil || !k.del(depth+1, kh) {
			return false
		}
		n.dirty = true
		n.count--
		if k.count == 0 {
			n.kids[i] = nil
		}
		if n.count <= LeafMax {
			n.leaves = n.collect(make([]LeafRef, 0, n.count))
			n.kids = nil
		}
		return true
	}
	i, found := findRef(n.leaves, kh)
	if !found {
		return false
	}
	n.dirty = true
	n.leaves = slices.Delete(n.leaves, i, i+1)
	n.count--
	return true
}

// collect appends every leaf under n to dst in key-hash order.
func (n *inode) collect(dst []LeafRef) []LeafRef {
	if n == nil {
		return dst
	}
	if n.kids == nil {
		return append(dst, n.leaves...)
	}
	for _, k := range n.kids {
		dst = k.collect(dst)
	}
	return dst
}

// leafDigest is the digest of a leaf node holding refs (sorted by KeyHash): the zero digest when
// empty, else sha256(tagLeaf || uint32 count || (KeyHash EntryHash)*).
func leafDigest(refs []LeafRef) Digest {
	if len(refs) == 0 {
		return Digest{}
	}
	b := make([]byte, 0, len(tagLeaf)+4+64*len(refs))
	b = append(b, tagLeaf...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(refs)))
	for _, r := range refs {
		b = append(b, r.KeyHash[:]...)
		b = append(b, r.EntryHash[:]...)
	}
	return sha256.Sum256(b)
}

// innerDigest is the digest of an inner node: sha256(tagInner || 16 child digests), an empty
// child contributing the zero digest.
func innerDigest(kids *[Fanout]Digest) Digest {
	b := make([]byte, 0, len(tagInner)+32*Fanout)
	b = append(b, tagInner...)
	for i := range kids {
		b = append(b, kids[i][:]...)
	}
	return sha256.Sum256(b)
}

func (n *inode) hash() Digest {
	if n == nil {
		return Digest{}
	}
	if !n.dirty {
		return n.digest
	}
	if n.kids == nil {
		n.digest = leafDigest(n.leaves)
	} else {
		var ds [Fanout]Digest
		for i, k := range n.kids {
			ds[i] = k.hash()
		}
		n.digest = innerDigest(&ds)
	}
	n.dirty = false
	return n.digest
}

// at returns the deepest real node on the way to p and its depth; when the returned node is a
// leaf above p's depth, the node at p is the part of its leaves under p (a "virtual" leaf).
func (n *inode) at(p Path) (*inode, int) {
	d := 0
	for d < len(p) && n != nil && n.kids != nil {
		n = n.kids[nibbleOf(p[d])]
		d++
	}
	return n, d
}

// refsUnder returns every leaf under p in key-hash order.
func (n *inode) refsUnder(p Path) []LeafRef {
	m, d := n.at(p)
	if m == nil {
		return nil
	}
	refs := m.collect(nil)
	if d < len(p) {
		refs = slices.DeleteFunc(refs, func(r LeafRef) bool { return !hasPrefix(&r.KeyHash, p) })
	}
	return refs
}

// summary returns the Summary of the node at p (which may be empty or virtual).
func (n *inode) summary(p Path) Summary {
	m, d := n.at(p)
	if m != nil && d == len(p) && m.kids != nil {
		s := Summary{Path: p, Count: m.count, Digest: m.hash(), Children: make([]Digest, Fanout)}
		for i, k := range m.kids {
			s.Children[i] = k.hash()
		}
		return s
	}
	refs := n.refsUnder(p)
	return Summary{Path: p, Count: len(refs), Digest: leafDigest(refs), Leaves: refs}
}

// check reports whether s is a consistent summary of a node at s.Path: 16 children, or leaves
// under the path in strictly increasing key-hash order, and s.Digest computed from them.
func (s *Summary) check() bool {
	if !s.Path.Valid() {
		return false
	}
	if s.Children != nil {
		if len(s.Children) != Fanout || s.Leaves != nil || len(s.Path) >= maxDepth {
			return false
		}
		var ds [Fanout]Digest
		copy(ds[:], s.Children)
		return innerDigest(&ds) == s.Digest
	}
	for i := range s.Leaves {
		if !hasPrefix(&s.Leaves[i].KeyHash, s.Path) || i > 0 && cmpRef(s.Leaves[i-1], s.Leaves[i]) >= 0 {
			return false
		}
	}
	return leafDigest(s.Leaves) == s.Digest
}
