package hashtree

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"
)

// This file is a from-scratch, deliberately naive implementation of the
// encodings in docs/tree-format.md, sharing no code with the package, used
// as the oracle of the tests.

type refEntry struct {
	Entry
	path string
}

// refModel is a flat map of path -> entry (directories included, root excluded).
type refModel map[string]*Entry

func refParent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func refBase(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func (m refModel) children(dir string) []string {
	var out []string
	for p := range m {
		if refParent(p) == dir {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(refBase(a), refBase(b)) })
	return out
}

type refChild struct {
	name   string
	kind   Kind
	digest Digest
}

func refSymlink(target string) Digest {
	b := []byte("trowfs.symlink.v1\x00")
	b = binary.BigEndian.AppendUint32(b, uint32(len(target)))
	b = append(b, target...)
	return sha256.Sum256(b)
}

func refNode(cs []refChild, depth int) Digest {
	if len(cs) <= 32 || depth == 64 {
		slices.SortFunc(cs, func(a, b refChild) int { return strings.Compare(a.name, b.name) })
		b := []byte("trowfs.dir.leaf.v1\x00")
		b = binary.BigEndian.AppendUint32(b, uint32(len(cs)))
		for _, c := range cs {
			b = binary.BigEndian.AppendUint32(b, uint32(len(c.name)))
			b = append(b, c.name...)
			b = append(b, byte(c.kind))
			b = append(b, c.digest[:]...)
		}
		return sha256.Sum256(b)
	}
	var groups [16][]refChild
	for _, c := range cs {
		k := sha256.Sum256([]byte(c.name))
		nb := k[depth/2] >> 4
		if depth%2 == 1 {
			nb = k[depth/2] & 15
		}
		groups[nb] = append(groups[nb], c)
	}
	var bitmap uint16
	var digs []byte
	for i, g := range groups {
		if len(g) > 0 {
			bitmap |= 1 << i
			d := refNode(g, depth+1)
			digs = append(digs, d[:]...)
		}
	}
	b := []byte("trowfs.dir.node.v1\x00")
	b = binary.BigEndian.AppendUint16(b, bitmap)
	return sha256.Sum256(append(b, digs...))
}

// digest computes the digest of dir ("" = root) from scratch.
func (m refModel) digest(dir string) Digest {
	var cs []refChild
	for _, p := range m.children(dir) {
		e := m[p]
		switch {
		case e.Kind == KindDir:
			cs = append(cs, refChild{refBase(p), KindDir, m.digest(p)})
		case e.Kind == KindSymlink:
			cs = append(cs, refChild{refBase(p), KindSymlink, refSymlink(e.Target)})
		case e.Status != StatusExcluded:
			cs = append(cs, refChild{refBase(p), KindFile, e.Digest})
		}
	}
	return refNode(cs, 0)
}

// summary computes Summary(p) by brute force; rootChanged is the root's ChangedAt.
func (m refModel) summary(p string, rootChanged int64) Summary {
	var s Summary
	first := true
	addFile := func(e *Entry) {
		s.Files++
		s.Bytes += e.Meta.Size
		s.ByStatus[e.Status]++
		if first || e.VerifiedAt == 0 || (s.VerifiedAt != 0 && e.VerifiedAt < s.VerifiedAt) {
			s.VerifiedAt = e.VerifiedAt
		}
		first = false
	}
	if p != "" && m[p].Kind != KindDir {
		e := m[p]
		s.ChangedAt = e.ChangedAt
		if e.Kind == KindFile {
			s.Digest = e.Digest
			addFile(e)
		} else {
			s.Digest = refSymlink(e.Target)
			s.Symlinks++
		}
		return s
	}
	s.Digest = m.digest(p)
	if p == "" {
		s.ChangedAt = rootChanged
	} else {
		s.ChangedAt = m[p].ChangedAt
	}
	for q, e := range m {
		if p != "" && !strings.HasPrefix(q, p+"/") {
			continue
		}
		s.ChangedAt = max(s.ChangedAt, e.ChangedAt)
		switch e.Kind {
		case KindFile:
			addFile(e)
		case KindDir:
			s.Dirs++
		case KindSymlink:
			s.Symlinks++
		}
	}
	return s
}
