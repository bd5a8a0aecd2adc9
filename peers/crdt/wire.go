package crdt

// Wire forms of the Sync messages (docs/peers.md, "Encoding"). Each starts with wireVersion.
const wireVersion = 1

// appendPath writes uvarint(nibbles) and the nibbles packed two per byte, high first; an odd
// last nibble leaves the low half of its byte zero.
func appendPath(b []byte, p Path) []byte {
	b = appendUvarint(b, uint64(len(p)))
	for i := 0; i < len(p); i += 2 {
		v := byte(nibbleOf(p[i])) << 4
		if i+1 < len(p) {
			v |= byte(nibbleOf(p[i+1]))
		}
		b = append(b, v)
	}
	return b
}

func (r *reader) path() Path {
	n := r.uvarint()
	if r.err == nil && n > maxDepth {
		r.fail("path of %d nibbles", n)
	}
	raw := r.bytes(int(n+1) / 2)
	if r.err != nil {
		return ""
	}
	p := make([]byte, 0, n)
	for i, v := range raw {
		p = append(p, hexDigits[v>>4])
		if uint64(2*i+1) < n {
			p = append(p, hexDigits[v&0x0f])
		} else if v&0x0f != 0 {
			r.fail("path padding not zero")
		}
	}
	return Path(p)
}

func (r *reader) version() {
	if v := r.byte1(); r.err == nil && v != wireVersion {
		r.fail("wire version %d", v)
	}
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}

// The shortest encodings, so that a claimed count is checked against what the remaining bytes can
// hold before anything is allocated for it.
const (
	minSummaryLen = 4  // path "" (1), count (1), kind 0 (1), no leaves (1)
	minEntryLen   = 21 // repo (2), kind (1), name (2), flags (1), target "" (1), wall (8), logical (4), node (2)
)

// limit refuses a count over max.
func (r *reader) limit(n, max int) int {
	if r.err == nil && n > max {
		r.fail("%d elements, at most %d", n, max)
		return 0
	}
	return n
}

// EncodePaths is a Summaries request: version, uvarint(n), n paths.
func EncodePaths(ps []Path) []byte {
	b := appendUvarint([]byte{wireVersion}, uint64(len(ps)))
	for _, p := range ps {
		b = appendPath(b, p)
	}
	return b
}

// DecodePaths parses EncodePaths, refusing more than max paths before decoding any.
func DecodePaths(b []byte, max int) ([]Path, error) {
	r := reader{b: b}
	r.version()
	n := r.limit(r.count(1), max)
	out := make([]Path, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, r.path())
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return out, nil
}

// EncodeSummaries is the answer to a Summaries request: version, uvarint(n), then per summary its
// path, uvarint(Count), and either 0x00 uvarint(leaves) (KeyHash EntryHash)* for a leaf, or 0x01, a
// 2-byte big-endian bitmap of the non-zero children (bit 15 is child 0) and those children's
// digests in order. The node digest is not sent: the decoder recomputes it.
func EncodeSummaries(ss []Summary) []byte {
	b := appendUvarint([]byte{wireVersion}, uint64(len(ss)))
	for _, s := range ss {
		b = appendPath(b, s.Path)
		b = appendUvarint(b, uint64(s.Count))
		if s.Children == nil {
			b = append(b, 0)
			b = appendUvarint(b, uint64(len(s.Leaves)))
			for _, l := range s.Leaves {
				b = append(b, l.KeyHash[:]...)
				b = append(b, l.EntryHash[:]...)
			}
			continue
		}
		var bits uint16
		for i, d := range s.Children {
			if !d.IsZero() {
				bits |= 1 << (15 - i)
			}
		}
		b = append(b, 1, byte(bits>>8), byte(bits))
		for _, d := range s.Children {
			if !d.IsZero() {
				b = append(b, d[:]...)
			}
		}
	}
	return b
}

// DecodeSummaries parses EncodeSummaries and recomputes each Digest; a summary that is not a
// consistent node (see Summary) is an error, and so are more than max summaries (the caller knows
// how many paths it asked for: an inner summary costs 5 bytes on the wire and 16 digests decoded).
func DecodeSummaries(b []byte, max int) ([]Summary, error) {
	r := reader{b: b}
	r.version()
	n := r.limit(r.count(minSummaryLen), max)
	out := make([]Summary, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		s := Summary{Path: r.path(), Count: int(r.uvarint())}
		switch k := r.byte1(); k {
		case 0:
			m := r.count(64)
			if m > 0 {
				s.Leaves = make([]LeafRef, m)
			}
			for j := 0; j < m; j++ {
				s.Leaves[j].KeyHash = r.digest()
				s.Leaves[j].EntryHash = r.digest()
			}
			s.Digest = leafDigest(s.Leaves)
		case 1:
			hi, lo := r.byte1(), r.byte1()
			bits := uint16(hi)<<8 | uint16(lo)
			s.Children = make([]Digest, Fanout)
			for j := 0; j < Fanout; j++ {
				if bits&(1<<(15-j)) != 0 {
					if s.Children[j] = r.digest(); r.err == nil && s.Children[j].IsZero() {
						r.fail("zero child digest sent")
					}
				}
			}
			var ds [Fanout]Digest
			copy(ds[:], s.Children)
			s.Digest = innerDigest(&ds)
		default:
			r.fail("summary kind %d", k)
		}
		if r.err == nil && !s.check() {
			r.fail("inconsistent summary at %q", s.Path)
		}
		out = append(out, s)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return out, nil
}

// EncodeDigests is a list of key hashes (an Entries request): version, uvarint(n), n × 32 bytes.
func EncodeDigests(ds []Digest) []byte {
	b := appendUvarint([]byte{wireVersion}, uint64(len(ds)))
	for _, d := range ds {
		b = append(b, d[:]...)
	}
	return b
}

// DecodeDigests parses EncodeDigests, refusing more than max digests before decoding any.
func DecodeDigests(b []byte, max int) ([]Digest, error) {
	r := reader{b: b}
	r.version()
	n := r.limit(r.count(32), max)
	out := make([]Digest, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		out = append(out, r.digest())
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return out, nil
}

// EncodeEntries is a batch of entries: version, uvarint(n), then uvarint(len) EncodeEntry each.
func EncodeEntries(es []Entry) []byte {
	b := appendUvarint([]byte{wireVersion}, uint64(len(es)))
	var eb []byte
	for _, e := range es {
		eb = AppendEntry(eb[:0], e)
		b = appendUvarint(b, uint64(len(eb)))
		b = append(b, eb...)
	}
	return b
}

// DecodeEntries parses EncodeEntries; every entry must be valid, and there may be at most max.
func DecodeEntries(b []byte, max int) ([]Entry, error) {
	r := reader{b: b}
	r.version()
	n := r.limit(r.count(minEntryLen+1), max)
	out := make([]Entry, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		l := r.uvarint()
		if r.err == nil && l > uint64(len(r.b)) {
			r.fail("entry length %d", l)
			break
		}
		e, err := DecodeEntry(r.bytes(int(l)))
		if err != nil {
			r.fail("entry %d: %v", i, err)
			break
		}
		out = append(out, e)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return out, nil
}
