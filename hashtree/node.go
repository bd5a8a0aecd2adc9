package hashtree

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"unsafe"
)

// inlineName is the longest name stored inside a node: enough for the
// files of a distribution layout ("data", "link"). What does not fit goes
// into ext.long, except the names of blob stores (see nameBlob), which
// take no space at all.
const inlineName = 5

// Name modes kept in node.nlen beside the inline lengths 0 … inlineName.
const (
	nameLong = 0xff // the name is x.long
	// nameBlob: a file called "sha256:" and the 64 lower-case hex digits of
	// its own digest (Trow v0.7's blobs/), and nameHex: the 64 hex digits
	// alone (Trow v0.3-0.6's blobs/sha256/, distribution's blob
	// directories are directories and do not qualify). The name is the
	// digest written out, so it is stored once, as the digest.
	nameBlob = 0xfe
	nameHex  = 0xfd
)

// blobNameLen is the length of a nameBlob name.
const blobNameLen = len(digestPrefix) + 2*len(Digest{})

// node is one entry of the tree. Files, symlinks and directories share the
// type so that a HAMT bucket is a plain slice of pointers; kind-specific
// data sits behind x. Keep it small (96 bytes, one size class): a million
// of these live in one directory.
//
// A file or symlink node is never modified once it is linked into a
// directory: a change builds a new node and links it in place of the old
// one (Tree.replace). That is what lets a nameBlob name live in the digest,
// and what keeps Frozen views intact without an epoch per file. A
// directory node is modified in place while it belongs to the current
// epoch (x.epoch, see cow.go). A node's name never changes once it is
// built (name() may hand out strings that alias nbuf); a rename links a
// renamed copy.
type node struct {
	changedAt  int64
	verifiedAt int64
	digest     Digest // file: content; symlink: symlinkDigest; dir: cached subtree digest (valid when x.root is clean)
	meta       Meta
	x          *ext  // long name, symlink target or directory contents; nil for most files
	nlen       uint8 // len(name) if inline, else nameLong, nameBlob or nameHex
	kind       Kind
	status     Status
	nbuf       [inlineName]byte // the name, if it fits
}

// ext holds what only symlinks, directories and long names need.
type ext struct {
	long   string // the name, when nlen is nameLong
	target string // KindSymlink

	// KindDir:
	root  *hnode  // the HAMT of the children; never nil for a directory
	idx   *index  // the children in name order; nil while root is a leaf (its bucket is already sorted)
	cnt   *counts // recursive counts of the subtree, the directory itself excluded (exact); its own to each epoch's copy
	epoch uint32  // the Tree.epoch the directory node was made in; an older one may be in a Frozen view (see cow.go)
}

// newNode returns a node called name (copied) of the given kind, with
// zero fields (a file: with the zero digest).
func newNode(name string, kind Kind) *node {
	n := &node{}
	n.init(name, kind, true)
	return n
}

// newEntryNode returns a file or symlink node called name holding e. With
// clone unset, name is known not to alias memory that changes (a string
// the tree already owns) and a long name is shared instead of copied.
func newEntryNode(name string, e *Entry, clone bool) *node {
	n := &node{kind: e.Kind, meta: e.Meta, changedAt: e.ChangedAt, verifiedAt: e.VerifiedAt, digest: e.Digest, status: e.Status}
	if e.Kind == KindSymlink {
		n.digest = symlinkDigest(e.Target)
		n.status = StatusVerified
	}
	n.init(name, e.Kind, clone)
	if e.Kind == KindSymlink {
		n.x.target = strings.Clone(e.Target)
	}
	return n
}

// slabSize is how many nodes a snapshot load allocates at once. Fewer,
// larger allocations load a million entries markedly faster; the price is
// that a slab stays in memory until its last node is dropped, so it is kept
// small.
const slabSize = 16384 / int(unsafe.Sizeof(node{})) // 170 nodes: one 16 KiB size class

// nodeSlab hands out zeroed nodes from slabs (bulk loads only).
type nodeSlab []node

func (s *nodeSlab) node() *node {
	if len(*s) == 0 {
		*s = make([]node, slabSize)
	}
	n := &(*s)[0]
	*s = (*s)[1:]
	return n
}

// init names the node n of the given kind and gives a directory its
// (empty) contents and a symlink its ext. A file's digest must already be
// set: it decides whether the name can be stored as the digest. name is
// copied (with clone unset, a long name is kept as is).
func (n *node) init(name string, kind Kind, clone bool) {
	n.kind = kind
	if kind != KindFile && n.x == nil {
		n.x = &ext{}
	}
	if kind == KindDir {
		n.x.root = &hnode{dirty: true}
		n.x.cnt = new(counts)
	}
	n.setName(name, clone)
}

// spells reports whether name is d written out, in either form a file's
// name may be stored as its digest (nameBlob, nameHex).
func spells(name string, d *Digest) bool {
	return isBlobName(name, d) || cmpHex(d, name) == 0
}

func isBlobName(name string, d *Digest) bool {
	return len(name) == blobNameLen && strings.HasPrefix(name, digestPrefix) && cmpHex(d, name[len(digestPrefix):]) == 0
}

func (n *node) setName(name string, clone bool) {
	switch {
	case len(name) <= inlineName:
		n.nlen = uint8(copy(n.nbuf[:], name))
	case n.kind == KindFile && isBlobName(name, &n.digest):
		n.nlen = nameBlob
	case n.kind == KindFile && cmpHex(&n.digest, name) == 0:
		n.nlen = nameHex
	default:
		if n.x == nil {
			n.x = &ext{}
		}
		if clone {
			name = strings.Clone(name)
		}
		n.nlen = nameLong
		n.x.long = name
	}
}

const hexDigits = "0123456789abcdef"

// cmpHex compares the 64 lower-case hex digits of d with s, as
// strings.Compare would, without writing them out.
func cmpHex(d *Digest, s string) int {
	for i := 0; i < 2*len(d); i++ {
		if i == len(s) {
			return 1
		}
		c := hexDigits[(d[i>>1]>>(4-4*(i&1)))&0x0f]
		if c != s[i] {
			if c < s[i] {
				return -1
			}
			return 1
		}
	}
	if len(s) > 2*len(d) {
		return -1
	}
	return 0
}

// name returns the entry's name. For an inline or long name the string
// aliases the node's memory, which is never modified after init; a name
// stored as the digest is written out (an allocation: hot paths use
// cmpName, view or appendName instead).
func (n *node) name() string {
	switch n.nlen {
	case nameLong:
		return n.x.long
	case nameBlob, nameHex:
		return string(n.appendName(nil))
	}
	return unsafe.String(&n.nbuf[0], int(n.nlen))
}

// view returns the name without allocating: for a name stored as the
// digest, written into b (the string is valid while b is).
func (n *node) view(b *[blobNameLen]byte) string {
	switch n.nlen {
	case nameBlob, nameHex:
		s := n.appendName(b[:0])
		return unsafe.String(&b[0], len(s))
	}
	return n.name()
}

// nameLen returns len(n.name()).
func (n *node) nameLen() int {
	switch n.nlen {
	case nameLong:
		return len(n.x.long)
	case nameBlob:
		return blobNameLen
	case nameHex:
		return 2 * len(Digest{})
	}
	return int(n.nlen)
}

// appendName appends the name to b.
func (n *node) appendName(b []byte) []byte {
	switch n.nlen {
	case nameLong:
		return append(b, n.x.long...)
	case nameBlob:
		b = append(b, digestPrefix...)
		return appendHex(b, &n.digest)
	case nameHex:
		return appendHex(b, &n.digest)
	}
	return append(b, n.nbuf[:n.nlen]...)
}

// appendHex appends the 64 lower-case hex digits of d, as hex.AppendEncode
// would, four bytes at a time: a leaf of blobs writes out every name it
// hashes, and a byte at a time that was a tenth of a million-entry
// directory's update.
func appendHex(b []byte, d *Digest) []byte {
	for i := 0; i < len(d); i += 4 {
		x := uint64(binary.BigEndian.Uint32(d[i:]))
		// Spread the 8 nibbles over the 8 bytes, most significant first.
		x = (x | x<<16) & 0x0000ffff0000ffff
		x = (x | x<<8) & 0x00ff00ff00ff00ff
		x = (x | x<<4) & 0x0f0f0f0f0f0f0f0f
		// '0'+v, and 'a'-'0'-10 more where v >= 10 (where v+6 carries into bit 4).
		ten := (x + 0x0606060606060606) >> 4 & 0x0101010101010101
		x += 0x3030303030303030 + ten*('a'-'0'-10)
		b = binary.BigEndian.AppendUint64(b, x)
	}
	return b
}

// cmpName compares the name with s as strings.Compare does.
func (n *node) cmpName(s string) int {
	switch n.nlen {
	case nameBlob:
		p := digestPrefix
		if len(s) < len(p) {
			if c := strings.Compare(p[:len(s)], s); c != 0 {
				return c
			}
			return 1
		}
		if c := strings.Compare(p, s[:len(p)]); c != 0 {
			return c
		}
		return cmpHex(&n.digest, s[len(p):])
	case nameHex:
		return cmpHex(&n.digest, s)
	}
	return strings.Compare(n.name(), s)
}

// byName orders nodes by name. Two names stored as digests in the same
// mode compare as their digests: hex digits keep the byte order.
func byName(a, b *node) int {
	if a.nlen == b.nlen && (a.nlen == nameBlob || a.nlen == nameHex) {
		return slices.Compare(a.digest[:], b.digest[:])
	}
	var buf [blobNameLen]byte
	return a.cmpName(b.view(&buf))
}

// searchName returns the index of name in the sorted ents, and whether it is there.
func searchName(ents []*node, name string) (int, bool) {
	return slices.BinarySearchFunc(ents, name, func(e *node, s string) int { return e.cmpName(s) })
}

// searchNode returns the index of n's name in the sorted ents, and whether it is there.
func searchNode(ents []*node, n *node) (int, bool) {
	return slices.BinarySearchFunc(ents, n, byName)
}

// renamed returns a copy of n called name, for a rename: n, which a Frozen
// view or a caller holding its name may still use, stays intact.
func (n *node) renamed(name string) *node {
	if n.kind != KindDir {
		e := n.entry()
		return newEntryNode(name, &e, true)
	}
	c := &node{changedAt: n.changedAt, verifiedAt: n.verifiedAt, digest: n.digest, meta: n.meta, kind: KindDir, status: n.status}
	x := *n.x // c shares n's directory contents and epoch: if n may be frozen, so may they
	x.long = ""
	c.x = &x
	c.setName(name, true)
	return c
}

// total returns the number of entries in the directory's subtree, the
// directory itself excluded.
func (x *ext) total() int64 { return x.cnt.files + x.cnt.dirs + x.cnt.symlinks }

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
		return 1 + n.x.total()
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
		c = *n.x.cnt
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
