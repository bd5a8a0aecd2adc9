package peers

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/trowfs/trowfs/peers/crdt"
)

// Wire forms of the data plane's bodies (docs/peers.md, "Protocol"). Every body starts with a
// format byte; counts and lengths are uvarints; digests are 32 raw bytes; entries are crdt's
// canonical encoding, so that the receiver can check each against the entry hash the sender's
// own tree published.
const wireVersion = 1

// Limits on what one request or answer may hold.
const (
	maxBody       = 16 << 20
	maxPaths      = 4096  // paths per summaries request
	maxKeys       = 16384 // key hashes per entries request, entries per offer
	maxEntryBytes = 64 << 10
	maxPathLen    = 64 // nibbles: a sha256 has 64
)

var errWire = errors.New("malformed body")

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errWire
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = errWire
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) digest() (d crdt.Digest) {
	copy(d[:], r.bytes(32))
	return d
}

func (r *reader) count(max int) int {
	n := r.uvarint()
	if n > uint64(max) {
		r.err = fmt.Errorf("%w: %d items, at most %d", errWire, n, max)
		return 0
	}
	return int(n)
}

func (r *reader) header() {
	if v := r.bytes(1); r.err == nil && v[0] != wireVersion {
		r.err = fmt.Errorf("%w: format %d, want %d", errWire, v[0], wireVersion)
	}
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", errWire, len(r.b))
	}
	return r.err
}

func putString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodePaths(ps []crdt.Path) []byte {
	b := []byte{wireVersion}
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		b = putString(b, string(p))
	}
	return b
}

func decodePaths(b []byte) ([]crdt.Path, error) {
	r := &reader{b: b}
	r.header()
	n := r.count(maxPaths)
	ps := make([]crdt.Path, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		p := string(r.bytes(r.count(maxPathLen)))
		for _, c := range p {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				r.err = fmt.Errorf("%w: path %q is not hex nibbles", errWire, p)
			}
		}
		ps = append(ps, crdt.Path(p))
	}
	return ps, r.done()
}

func encodeSummaries(ss []crdt.Summary) []byte {
	b := []byte{wireVersion}
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = putString(b, string(s.Path))
		b = binary.AppendUvarint(b, uint64(s.Count))
		b = append(b, s.Digest[:]...)
		b = binary.AppendUvarint(b, uint64(len(s.Children)))
		for _, c := range s.Children {
			b = append(b, c[:]...)
		}
		b = binary.AppendUvarint(b, uint64(len(s.Leaves)))
		for _, l := range s.Leaves {
			b = append(b, l.KeyHash[:]...)
			b = append(b, l.EntryHash[:]...)
		}
	}
	return b
}

func decodeSummaries(b []byte) ([]crdt.Summary, error) {
	r := &reader{b: b}
	r.header()
	n := r.count(maxPaths)
	ss := make([]crdt.Summary, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		var s crdt.Summary
		s.Path = crdt.Path(r.bytes(r.count(maxPathLen)))
		s.Count = r.count(1 << 40)
		s.Digest = r.digest()
		if nc := r.count(16); nc > 0 {
			if nc != 16 {
				r.err = fmt.Errorf("%w: %d children, want 0 or 16", errWire, nc)
				break
			}
			s.Children = make([]crdt.Digest, nc)
			for j := range s.Children {
				s.Children[j] = r.digest()
			}
		}
		nl := r.count(crdt.LeafMax)
		for j := 0; j < nl && r.err == nil; j++ {
			s.Leaves = append(s.Leaves, crdt.LeafRef{KeyHash: r.digest(), EntryHash: r.digest()})
		}
		ss = append(ss, s)
	}
	return ss, r.done()
}

func encodeDigests(ds []crdt.Digest) []byte {
	b := []byte{wireVersion}
	b = binary.AppendUvarint(b, uint64(len(ds)))
	for _, d := range ds {
		b = append(b, d[:]...)
	}
	return b
}

func decodeDigests(b []byte) ([]crdt.Digest, error) {
	r := &reader{b: b}
	r.header()
	n := r.count(maxKeys)
	ds := make([]crdt.Digest, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		ds = append(ds, r.digest())
	}
	return ds, r.done()
}

// encodeRaw frames already-encoded entries.
func encodeRaw(raws [][]byte) []byte {
	b := []byte{wireVersion}
	b = binary.AppendUvarint(b, uint64(len(raws)))
	for _, e := range raws {
		b = binary.AppendUvarint(b, uint64(len(e)))
		b = append(b, e...)
	}
	return b
}

func decodeRaw(b []byte) ([][]byte, error) {
	r := &reader{b: b}
	r.header()
	n := r.count(maxKeys)
	out := make([][]byte, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, r.bytes(r.count(maxEntryBytes)))
	}
	return out, r.done()
}
