package hashtree

import (
	"math"
	"slices"
	"strings"
	"unsafe"
)

// inlineName is the longest name stored inside a node. Trow's blob names
// ("sha256:" and 64 hex digits, 71 bytes) fit; longer names live in
// ext.long. With it, everything a directory's refresh reads from an entry
// (times, digest, kind, status, name) lies in the node's first 128 bytes.
const inlineName = 77

// longName marks a node whose name is in x.long.
const longName = 0xff

// node is one entry of the tree. Files, symlinks and directories share the
// type so that a HAMT bucket is a plain slice of pointers; kind-specific data
// sits behind x. Keep it small (168 bytes, a 176-byte allocation): a million
// of these live in one directory. A node's name never changes once it is
// built (name() hands out strings that alias nbuf); a rename attaches a
// renamed copy.
type node struct {
	changedAt  int64
	verifiedAt int64
	digest     Digest // file: content; symlink: symlinkDigest; dir: cached subtree digest (valid when x.root is clean)
	nlen       uint8  // len(name), or longName
	kind       Kind
	status     Status
	nbuf       [inlineName]byte // the name, if it fits
	meta       Meta
	x          *ext   // long name, symlink target or directory contents; nil for most files
	epoch      uint32 // the Tree.epoch it was made in; older nodes may be in a Frozen view (see cow.go)
}

// ext holds what only symlinks, directories and long names need.
type ext struct {
	long   string // the name, when longer than inlineName
	target string // KindSymlink

	// KindDir:
	root  *hnode // the HAMT of the children; never nil for a directory
	idx   *index // the children in name order; nil while root is a leaf (its bucket is already sorted)
	total int64  // entries in the subtree, the directory itself excluded
}

// newNode returns a node called name (copied) of the given kind.
func newNode(name string, kind Kind) *node {
	n := &node{}
	n.init(name, kind)
	return n
}

// slabSize is how many nodes a snapshot load allocates at once. Fewer,
// larger allocations load a million entries markedly faster; the price is
// that a slab stays in memory until its last node is dropped, so it is kept
// small.
const slabSize = 16384 / int(unsafe.Sizeof(node{})) // 93 nodes: one 16 KiB size class, no rounding loss

// nodeSlab hands out nodes from slabs (bulk loads only).
type nodeSlab []node

func (s *nodeSlab) newNode(name []byte, kind Kind) *node {
	if len(*s) == 0 {
		*s = make([]node, slabSize)
	}
	n := &(*s)[0]
	*s = (*s)[1:]
	if len(name) <= inlineName {
		n.nlen = uint8(copy(n.nbuf[:], name))
		name = nil
	}
	n.init(string(name), kind) // string(nil) is "": no copy for inline names
	return n
}

// init sets up the zero node n; name "" means already set in nbuf.
func (n *node) init(name string, kind Kind) {
	n.kind = kind
	switch {
	case name == "":
	case len(name) <= inlineName:
		n.nlen = uint8(copy(n.nbuf[:], name))
	default:
		n.nlen = longName
		n.x = &ext{long: strings.Clone(name)}
	}
	if kind == KindDir {
		if n.x == nil {
			n.x = &ext{}
		}
		n.x.root = &hnode{dirty: true}
	}
}

// name returns the entry's name. The string aliases the node's memory,
// which is never modified after newNode.
func (n *node) name() string {
	if n.nlen == longName {
		return n.x.long
	}
	return unsafe.String(&n.nbuf[0], int(n.nlen))
}

// renamed returns a copy of n called name, for a rename: n's own name, which
// callers may still hold, stays intact.
func (n *node) renamed(name string) *node {
	c := newNode(name, KindFile)
	c.kind, c.status, c.digest, c.meta, c.changedAt, c.verifiedAt = n.kind, n.status, n.digest, n.meta, n.changedAt, n.verifiedAt
	c.epoch = n.epoch // c shares n's directory contents: if n may be frozen, so may they
	if n.x != nil {
		long := c.nlen == longName
		x := *n.x
		if long {
			x.long = c.x.long
		} else {
			x.long = ""
		}
		c.x = &x
	}
	if c.kind == KindFile && c.x != nil && c.x.long == "" {
		c.x = nil
	}
	return c
}

func newDir(name string, changedAt int64) *node {
	n := newNode(name, KindDir)
	n.changedAt = changedAt
	return n
}

// contributes reports whether the entry enters its directory's digest.
func (n *node) contributes() bool { return !(n.kind == KindFile && n.status == StatusExcluded) }

// size is the number of entries n accounts for (itself and its subtree).
func (n *node) size() int64 {
	if n.kind == KindDir {
		return 1 + n.x.total
	}
	return 1
}

// entry converts n to the exported form; a directory must be refreshed.
func (n *node) entry() Entry {
	e := Entry{Kind: n.kind, Digest: n.digest, Status: n.status, Meta: n.meta, ChangedAt: n.changedAt, VerifiedAt: n.verifiedAt}
	if n.kind == KindSymlink {
		e.Target = n.x.target
	}
	return e
}

// noFiles is the VerifiedAt aggregate of a subtree without files: the
// identity of min, turned into 0 by Summary.
const noFiles = math.MaxInt64

// counts are the additive aggregates of a subtree, kept exact on every
// update along the path from the root (they can be subtracted).
type counts struct {
	files, dirs, symlinks, bytes int64
	byStatus                     [NumStatus]int64
}

func (c *counts) add(d *counts, sign int64) {
	c.files += sign * d.files
	c.dirs += sign * d.dirs
	c.symlinks += sign * d.symlinks
	c.bytes += sign * d.bytes
	for i := range c.byStatus {
		c.byStatus[i] += sign * d.byStatus[i]
	}
}

// contrib returns what the entry n adds to its directory's counts.
func contrib(n *node) counts {
	var c counts
	switch n.kind {
	case KindFile:
		c.files = 1
		c.bytes = n.meta.Size
		c.byStatus[n.status] = 1
	case KindSymlink:
		c.symlinks = 1
	case KindDir:
		c = n.x.root.cnt
		c.dirs++
	}
	return c
}

// times returns the max ChangedAt and min VerifiedAt (noFiles if none) that
// the entry n brings; a directory must be refreshed.
func times(n *node) (chg, ver int64) {
	switch n.kind {
	case KindFile:
		return n.changedAt, n.verifiedAt
	case KindDir:
		return max(n.changedAt, n.x.root.chg), n.x.root.ver
	}
	return n.changedAt, noFiles
}

func summaryOf(c *counts, d Digest, chg, ver int64) Summary {
	if ver == noFiles {
		ver = 0
	}
	return Summary{Digest: d, Files: c.files, Dirs: c.dirs, Symlinks: c.symlinks, Bytes: c.bytes,
		ByStatus: c.byStatus, ChangedAt: chg, VerifiedAt: ver}
}

func byName(a, b *node) int { return strings.Compare(a.name(), b.name()) }

// searchName returns the index of name in the sorted ents, and whether it is there.
func searchName(ents []*node, name string) (int, bool) {
	return slices.BinarySearchFunc(ents, name, func(e *node, s string) int { return strings.Compare(e.name(), s) })
}
