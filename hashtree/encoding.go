package hashtree

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// Domain-separation tags of the canonical encodings (docs/tree-format.md).
const (
	tagSymlink = "trowfs.symlink.v1\x00"
	tagLeaf    = "trowfs.dir.leaf.v1\x00"
	tagNode    = "trowfs.dir.node.v1\x00"
)

// HAMT parameters. They are part of the directory digest definition.
const (
	bucketSize = 32 // a node holding at most this many contributing entries is a leaf
	fanout     = 16 // children per internal node: one hex nibble of sha256(name)
	maxDepth   = 64 // nibbles in a sha256: a node at this depth is always a leaf
)

// nibble returns the depth-th 4-bit digit of key, most significant first.
func nibble(key *[32]byte, depth int) int {
	b := key[depth>>1]
	if depth&1 == 0 {
		return int(b >> 4)
	}
	return int(b & 0x0f)
}

// symlinkDigest is the digest of a symlink entry.
func symlinkDigest(target string) Digest {
	h := sha256.New()
	var n [4]byte
	h.Write([]byte(tagSymlink))
	binary.BigEndian.PutUint32(n[:], uint32(len(target)))
	h.Write(n[:])
	h.Write([]byte(target))
	var d Digest
	h.Sum(d[:0])
	return d
}

// hasher holds reusable scratch space for hashing; a Tree owns one.
type hasher struct {
	h   hash.Hash
	buf []byte
	sum []byte // scratch for h.Sum
}

func newHasher() *hasher { return &hasher{h: sha256.New(), buf: make([]byte, 0, 256)} }

// key returns sha256(name), the HAMT key of a name.
func (hs *hasher) key(name string) [32]byte {
	hs.buf = append(hs.buf[:0], name...)
	return sha256.Sum256(hs.buf)
}

// keyOf returns the HAMT key of n's name.
func (hs *hasher) keyOf(n *node) [32]byte {
	hs.buf = n.appendName(hs.buf[:0])
	return sha256.Sum256(hs.buf)
}

// leafDigest hashes the n contributing entries among ents, which must be
// sorted by name.
//
// Digests are taken with sha256.Sum256 over the whole encoding, not through
// hs.h: a Sum through the interface moved its result to the heap, an
// allocation per digest, six per update in a 1M-entry directory. Only a
// leaf whose encoding outgrows streamAt (long names) is streamed.
func (hs *hasher) leafDigest(ents []*node, n int) Digest {
	b := append(hs.buf[:0], tagLeaf...)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	streamed := false
	for _, e := range ents {
		if !e.contributes() {
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(e.nameLen()))
		b = e.appendName(b)
		b = append(b, byte(e.kind))
		b = append(b, e.digest[:]...)
		if len(b) >= streamAt {
			if !streamed {
				hs.h.Reset()
				streamed = true
			}
			hs.h.Write(b)
			b = b[:0]
		}
	}
	hs.buf = b[:0]
	if !streamed {
		return sha256.Sum256(b)
	}
	hs.h.Write(b)
	hs.sum = hs.h.Sum(hs.sum[:0])
	return Digest(hs.sum)
}

// streamAt is the size of encoding that leafDigest hashes as it goes.
const streamAt = 8192

// nodeDigest hashes an internal node from its children's digests.
func (hs *hasher) nodeDigest(in *inner) Digest {
	b := append(hs.buf[:0], tagNode...)
	b = binary.BigEndian.AppendUint16(b, in.bits)
	for i := range in.dig {
		if in.bits&(1<<i) != 0 {
			b = append(b, in.dig[i][:]...)
		}
	}
	hs.buf = b[:0]
	return sha256.Sum256(b)
}
