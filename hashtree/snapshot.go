package hashtree

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"unsafe"
)

// Snapshot format constants (docs/tree-format.md, "Snapshot").
const (
	snapMagic   = "TROWTREE"
	snapVersion = 1
	// Limits that keep a hostile snapshot from allocating much more than its
	// own size or nesting deeper than any real filesystem.
	maxSnapString = 1 << 16 // bytes in a name, target, meta key or value
	maxSnapMeta   = 1 << 16 // meta key/value pairs
	maxSnapDepth  = 1 << 16 // directory nesting
	snapBuf       = 1 << 18 // I/O buffer; must exceed maxSnapString plus a record's fixed fields
)

// Record kinds; 0 ends the record list.
const recEnd = 0

// snapWriter buffers output, hashing each buffer once as it is flushed.
type snapWriter struct {
	w   io.Writer
	h   hash.Hash
	buf []byte
	err error
}

func (s *snapWriter) flush() {
	if s.err == nil && len(s.buf) > 0 {
		s.h.Write(s.buf)
		_, s.err = s.w.Write(s.buf)
	}
	s.buf = s.buf[:0]
}

func (s *snapWriter) maybeFlush() {
	if len(s.buf) >= snapBuf/2 {
		s.flush()
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendMeta(b []byte, m *Meta) []byte {
	b = binary.AppendVarint(b, m.Size)
	b = binary.AppendVarint(b, m.Mtime)
	b = binary.AppendVarint(b, m.Ctime)
	return binary.AppendUvarint(b, m.Ino)
}

// ErrSnapshotTooDeep is returned by WriteSnapshot for a tree nested deeper
// than the snapshot format allows.
var ErrSnapshotTooDeep = errors.New("hashtree: tree too deep for a snapshot")

// WriteSnapshot streams t and meta to w in the snapshot format of
// docs/tree-format.md. It holds no second copy of the tree: entries are
// encoded as the tree is walked, through one fixed-size buffer.
func WriteSnapshot(w io.Writer, t *Tree, meta map[string]string) error {
	return writeSnapshot(w, t.root, t.Root(), meta)
}

// writeSnapshot streams the tree under the root directory top, whose
// digests are up to date and whose digest is root.
func writeSnapshot(w io.Writer, top *node, root Digest, meta map[string]string) error {
	s := &snapWriter{w: w, h: sha256.New(), buf: make([]byte, 0, snapBuf)}
	s.buf = append(s.buf, snapMagic...)
	s.buf = binary.AppendUvarint(s.buf, snapVersion)
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) > maxSnapMeta {
		return fmt.Errorf("hashtree: snapshot meta has %d keys, at most %d allowed", len(keys), maxSnapMeta)
	}
	s.buf = binary.AppendUvarint(s.buf, uint64(len(keys)))
	for _, k := range keys {
		if len(k) > maxSnapString || len(meta[k]) > maxSnapString {
			return fmt.Errorf("hashtree: snapshot meta %q: key or value longer than %d bytes", k, maxSnapString)
		}
		s.buf = appendString(s.buf, k)
		s.buf = appendString(s.buf, meta[k])
		s.maybeFlush()
	}
	s.buf = binary.AppendVarint(s.buf, top.changedAt)
	var count uint64
	if err := s.dir(top, 0, &count); err != nil {
		return err
	}
	s.buf = append(s.buf, recEnd)
	s.buf = binary.AppendUvarint(s.buf, count)
	s.buf = append(s.buf, root[:]...)
	s.flush()
	if s.err != nil {
		return fmt.Errorf("hashtree: writing snapshot: %w", s.err)
	}
	var sum [sha256.Size]byte
	s.h.Sum(sum[:0])
	if _, err := w.Write(sum[:]); err != nil {
		return fmt.Errorf("hashtree: writing snapshot: %w", err)
	}
	return nil
}

// dir writes the children of d, whose own children sit at the given depth.
func (s *snapWriter) dir(d *node, depth int, count *uint64) error {
	if depth > maxSnapDepth {
		return ErrSnapshotTooDeep
	}
	var err error
	d.x.ascend("", func(n *node) bool {
		*count++
		b := append(s.buf, byte(n.kind))
		b = binary.AppendUvarint(b, uint64(depth))
		b = binary.AppendUvarint(b, uint64(n.nameLen()))
		b = n.appendName(b)
		switch n.kind {
		case KindFile:
			b = append(b, n.digest[:]...)
			b = append(b, byte(n.status))
			b = appendMeta(b, &n.meta)
			b = binary.AppendVarint(b, n.changedAt)
			b = binary.AppendVarint(b, n.verifiedAt)
		case KindSymlink:
			b = appendString(b, n.x.target)
			b = appendMeta(b, &n.meta)
			b = binary.AppendVarint(b, n.changedAt)
			b = binary.AppendVarint(b, n.verifiedAt)
		case KindDir:
			b = binary.AppendVarint(b, n.changedAt)
		}
		s.buf = b
		s.maybeFlush()
		if s.err != nil {
			return false
		}
		if n.kind == KindDir {
			err = s.dir(n, depth+1, count)
		}
		return err == nil
	})
	if err == nil {
		err = s.err
	}
	return err
}

// snapReader is a buffered reader that hashes exactly the bytes consumed,
// in large batches, and remembers the first error.
type snapReader struct {
	r      io.Reader
	h      hash.Hash
	buf    []byte // buf[pos:] is unread
	pos    int
	hashed int   // buf[:hashed] has been hashed
	off    int64 // stream offset of buf[0]
	eof    bool
	err    error
}

func (s *snapReader) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf("%w: at byte %d: %s", ErrCorruptSnapshot, s.off+int64(s.pos), fmt.Sprintf(format, args...))
	}
}

// fill tries to make need bytes available and returns how many are.
func (s *snapReader) fill(need int) int {
	if len(s.buf)-s.pos >= need || s.eof {
		return len(s.buf) - s.pos
	}
	s.h.Write(s.buf[s.hashed:s.pos])
	n := copy(s.buf, s.buf[s.pos:])
	s.off += int64(s.pos)
	s.buf = s.buf[:n]
	s.pos, s.hashed = 0, 0
	if c := cap(s.buf); c < need || c < snapBuf {
		// Start small (fuzzing reads many tiny inputs) and grow to snapBuf.
		nb := make([]byte, n, min(max(2*c, need), max(snapBuf, need)))
		copy(nb, s.buf)
		s.buf = nb
	}
	for len(s.buf) < need && !s.eof {
		m, err := s.r.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+m]
		if err == io.EOF {
			s.eof = true
		} else if err != nil {
			s.eof = true
			if s.err == nil {
				s.err = fmt.Errorf("hashtree: reading snapshot: %w", err)
			}
		}
	}
	return len(s.buf) - s.pos
}

func (s *snapReader) bytes(n int) []byte {
	if s.err != nil {
		return nil
	}
	if s.fill(n) < n {
		s.fail("truncated")
		return nil
	}
	b := s.buf[s.pos : s.pos+n]
	s.pos += n
	return b
}

func (s *snapReader) u8() byte {
	if b := s.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (s *snapReader) uvarint() uint64 {
	if s.err != nil {
		return 0
	}
	s.fill(binary.MaxVarintLen64)
	v, n := binary.Uvarint(s.buf[s.pos:])
	switch {
	case n == 0:
		s.fail("truncated")
	case n < 0:
		s.fail("varint overflows 64 bits")
	default:
		s.pos += n
	}
	return v
}

func (s *snapReader) varint() int64 {
	u := s.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (s *snapReader) string(what string) string {
	n := s.uvarint()
	if s.err == nil && n > maxSnapString {
		s.fail("%s of %d bytes, at most %d allowed", what, n, maxSnapString)
	}
	return string(s.bytes(int(n)))
}

// nameBytes reads a name; the bytes are valid until the next read.
func (s *snapReader) nameBytes() []byte {
	n := s.uvarint()
	if s.err == nil && n > maxSnapString {
		s.fail("name of %d bytes, at most %d allowed", n, maxSnapString)
	}
	return s.bytes(int(n))
}

func (s *snapReader) meta() Meta {
	return Meta{Size: s.varint(), Mtime: s.varint(), Ctime: s.varint(), Ino: s.uvarint()}
}

// openDir is a directory being read: its children arrive in name order and
// are turned into its HAMT when the directory is complete.
type openDir struct {
	n    *node
	kids []*node
}

func validName(name string) bool {
	return name != "" && name != "." && name != ".." && bytes.IndexByte([]byte(name), '/') < 0 && bytes.IndexByte([]byte(name), 0) < 0
}

// ReadSnapshot reads a snapshot written by WriteSnapshot. Any damage
// (truncation, a flipped bit, trailing bytes, a malformed record) gives an
// error wrapping ErrCorruptSnapshot; a snapshot of a newer format version
// gives one wrapping ErrSnapshotVersion. It never panics on bad input.
func ReadSnapshot(r io.Reader) (*Tree, map[string]string, error) {
	s := &snapReader{r: r, h: sha256.New(), buf: make([]byte, 0, 4096)}
	if m := s.bytes(len(snapMagic)); s.err != nil || string(m) != snapMagic {
		if s.err == nil {
			s.fail("not a trowfs tree snapshot (bad magic)")
		}
		return nil, nil, s.err
	}
	switch v := s.uvarint(); {
	case s.err != nil:
		return nil, nil, s.err
	case v > snapVersion:
		return nil, nil, fmt.Errorf("%w: snapshot version %d, this build reads up to %d", ErrSnapshotVersion, v, snapVersion)
	case v != snapVersion:
		s.fail("snapshot version %d", v)
		return nil, nil, s.err
	}
	nmeta := s.uvarint()
	if s.err == nil && nmeta > maxSnapMeta {
		s.fail("%d meta entries, at most %d allowed", nmeta, maxSnapMeta)
	}
	meta := make(map[string]string, min(nmeta, 64))
	prevKey := ""
	for i := uint64(0); i < nmeta && s.err == nil; i++ {
		k := s.string("meta key")
		v := s.string("meta value")
		if i > 0 && k <= prevKey {
			s.fail("meta keys out of order")
		}
		meta[k] = v
		prevKey = k
	}
	t := New()
	t.root.changedAt = s.varint()
	stack := []openDir{{n: t.root}}
	var slab nodeSlab
	var nameBuf []byte
	var count uint64
	for s.err == nil {
		kind := Kind(s.u8())
		if s.err != nil || kind == recEnd {
			break
		}
		depth := s.uvarint()
		name := s.nameBytes()
		if s.err != nil {
			break
		}
		if depth >= uint64(len(stack)) {
			s.fail("entry %q at depth %d below an open directory at depth %d", name, depth, len(stack)-1)
			break
		}
		for len(stack) > int(depth)+1 {
			t.closeDir(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
		}
		parent := &stack[depth]
		if !validName(string(name)) {
			s.fail("invalid name %q", name)
			break
		}
		if k := len(parent.kids); k > 0 && parent.kids[k-1].cmpName(unsafe.String(unsafe.SliceData(name), len(name))) >= 0 {
			s.fail("entry %q out of order after %q", name, parent.kids[k-1].name())
			break
		}
		// The name's bytes are only valid until the next read.
		nameBuf = append(nameBuf[:0], name...)
		nameStr := unsafe.String(unsafe.SliceData(nameBuf), len(nameBuf)) // init copies what it keeps
		n := slab.node()
		switch kind {
		case KindFile:
			copy(n.digest[:], s.bytes(len(n.digest)))
			n.status = Status(s.u8())
			if s.err == nil && n.status >= NumStatus {
				s.fail("entry %q: invalid status %d", nameStr, n.status)
			}
			n.meta = s.meta()
			n.changedAt = s.varint()
			n.verifiedAt = s.varint()
			n.init(nameStr, kind, true)
		case KindSymlink:
			target := s.string("symlink target")
			n.digest = symlinkDigest(target)
			n.status = StatusVerified
			n.meta = s.meta()
			n.changedAt = s.varint()
			n.verifiedAt = s.varint()
			n.init(nameStr, kind, true)
			n.x.target = target
		case KindDir:
			if len(stack) > maxSnapDepth {
				s.fail("directories nested deeper than %d", maxSnapDepth)
			}
			n.changedAt = s.varint()
			n.init(nameStr, kind, true)
		default:
			s.fail("entry %q: invalid kind %d", nameStr, kind)
		}
		if s.err != nil {
			break
		}
		parent.kids = append(parent.kids, n)
		count++
		if kind == KindDir {
			stack = append(stack, openDir{n: n})
		}
	}
	if s.err != nil {
		return nil, nil, s.err
	}
	for i := len(stack) - 1; i >= 0; i-- {
		t.closeDir(stack[i])
	}
	t.count = t.root.x.total()
	storedCount := s.uvarint()
	var storedRoot Digest
	copy(storedRoot[:], s.bytes(len(storedRoot)))
	if s.err != nil {
		return nil, nil, s.err
	}
	if storedCount != count {
		s.fail("%d entries, the trailer says %d", count, storedCount)
		return nil, nil, s.err
	}
	// The checksum covers everything before it.
	s.h.Write(s.buf[s.hashed:s.pos])
	s.hashed = s.pos
	var sum Digest
	s.h.Sum(sum[:0])
	stored := s.bytes(len(sum))
	if s.err != nil {
		return nil, nil, s.err
	}
	if !bytes.Equal(stored, sum[:]) {
		s.fail("checksum mismatch")
		return nil, nil, s.err
	}
	if s.fill(1) > 0 {
		s.fail("trailing bytes after the checksum")
	}
	if s.err != nil {
		return nil, nil, s.err
	}
	if got := t.Root(); got != storedRoot {
		return nil, nil, fmt.Errorf("%w: root digest %v, the snapshot says %v", ErrCorruptSnapshot, got, storedRoot)
	}
	return t, meta, nil
}

// closeDir builds the HAMT of a directory whose children have all been read.
func (t *Tree) closeDir(d openDir) {
	t.setChildren(d.n.x, d.kids) // counts the subtree too
	d.n.digest = d.n.x.root.digest
}
