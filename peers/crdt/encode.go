package crdt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Limits on the strings of a register: a registry accepts nothing longer, and a decoder must not
// allocate what a corrupt length claims.
const (
	MaxNameLen = 4096 // repository names, tags, digests and node names
)

// ErrFormat is wrapped by every decoding error.
var ErrFormat = errors.New("crdt: malformed encoding")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// String returns the digest as lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the all-zero digest (the digest of an empty index node).
func (d Digest) IsZero() bool { return d == Digest{} }

// Validate reports why e cannot be a register, or nil. Merge ignores invalid entries and
// decoders reject them.
func (e Entry) Validate() error {
	switch {
	case e.Kind != Manifest && e.Kind != Tag:
		return fmt.Errorf("crdt: entry kind %q", e.Kind)
	case e.Repo == "" || e.Name == "":
		return errors.New("crdt: entry with an empty repository or name")
	case len(e.Repo) > MaxNameLen || len(e.Name) > MaxNameLen || len(e.Target) > MaxNameLen || len(e.Stamp.Node) > MaxNameLen:
		return errors.New("crdt: entry string too long")
	case e.Stamp.Node == "":
		return errors.New("crdt: entry stamped by no node")
	case e.Kind == Manifest && e.Target != "":
		return errors.New("crdt: manifest entry with a target")
	case e.Kind == Tag && e.Deleted && e.Target != "":
		return errors.New("crdt: deleted tag with a target")
	case e.Kind == Tag && !e.Deleted && e.Target == "":
		return errors.New("crdt: live tag without a target")
	}
	return nil
}

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendKey appends the canonical encoding of k to b:
// uvarint(len Repo) Repo, Kind (one byte), uvarint(len Name) Name.
func AppendKey(b []byte, k Key) []byte {
	b = appendString(b, k.Repo)
	b = append(b, byte(k.Kind))
	return appendString(b, k.Name)
}

// EncodeKey returns the canonical encoding of k (see AppendKey).
func EncodeKey(k Key) []byte { return AppendKey(nil, k) }

// KeyHash is sha256(EncodeKey(k)): the register's position in the Merkle index.
func KeyHash(k Key) Digest { return sha256.Sum256(EncodeKey(k)) }

func appendStamp(b []byte, s Stamp) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(s.Wall))
	b = binary.BigEndian.AppendUint32(b, s.Logical)
	return appendString(b, s.Node)
}

// AppendEntry appends the canonical encoding of e to b: the key encoding, a flags byte (0x01 a
// tombstone, 0x00 a live value), uvarint(len Target) Target, Wall as 8 bytes big-endian
// (two's complement), Logical as 4 bytes big-endian, uvarint(len Node) Node.
func AppendEntry(b []byte, e Entry) []byte {
	b = AppendKey(b, e.Key)
	if e.Deleted {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendString(b, e.Target)
	return appendStamp(b, e.Stamp)
}

// EncodeEntry is the canonical wire form of one register (also what EntryHash hashes).
func EncodeEntry(e Entry) []byte { return AppendEntry(nil, e) }

// EntryHash is sha256(EncodeEntry(e)): the register's value in the Merkle index.
func EntryHash(e Entry) Digest { return sha256.Sum256(EncodeEntry(e)) }

// DecodeEntry parses exactly one canonical entry encoding and validates the entry.
func DecodeEntry(b []byte) (Entry, error) {
	r := reader{b: b}
	e := r.entry()
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes after an entry", len(r.b))
	}
	if r.err != nil {
		return Entry{}, r.err
	}
	return e, nil
}

// reader decodes the canonical forms strictly: minimal varints, bounded lengths, no panics. The
// first error sticks and every later read returns zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = formatErr(format, args...)
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	if n != len(binary.AppendUvarint(nil, v)) {
		r.fail("non-minimal varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a uvarint element count, each element taking at least min bytes.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/min) {
		r.fail("count %d exceeds the %d remaining bytes", n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("truncated: want %d bytes, have %d", n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte1() byte {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err == nil && n > MaxNameLen {
		r.fail("string length %d over %d", n, MaxNameLen)
		return ""
	}
	return string(r.bytes(int(n)))
}

func (r *reader) digest() (d Digest) {
	copy(d[:], r.bytes(32))
	return d
}

func (r *reader) stamp() Stamp {
	var s Stamp
	if v := r.bytes(8); v != nil {
		s.Wall = int64(binary.BigEndian.Uint64(v))
	}
	if v := r.bytes(4); v != nil {
		s.Logical = binary.BigEndian.Uint32(v)
	}
	s.Node = r.string()
	return s
}

func (r *reader) entry() Entry {
	var e Entry
	e.Repo = r.string()
	e.Kind = Kind(r.byte1())
	e.Name = r.string()
	switch f := r.byte1(); f {
	case 0:
	case 1:
		e.Deleted = true
	default:
		r.fail("entry flags %#x", f)
	}
	e.Target = r.string()
	e.Stamp = r.stamp()
	if r.err != nil {
		return Entry{}
	}
	if err := e.Validate(); err != nil {
		r.fail("%v", err)
		return Entry{}
	}
	return e
}
