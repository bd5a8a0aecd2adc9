package crdt

import (
	"bytes"
	"crypto/sha256"
	"maps"
	"slices"
)

// The persistent form of a whole State (docs/peers.md, "Encoding"): magic, version, body, and the
// sha256 of everything before it.
const (
	stateMagic   = "TROWPEER"
	stateVersion = 1
)

// MarshalBinary is the persistent and wire form of a whole state: registers, last View, the
// greatest stamp (the clock to restore) and the conflict counter; versioned and checksummed.
func (s *State) MarshalBinary() ([]byte, error) {
	b := append([]byte(stateMagic), stateVersion)
	b = appendStamp(b, s.max)
	b = appendUvarint(b, s.conflicts)
	all := s.All()
	b = appendUvarint(b, uint64(len(all)))
	var eb []byte
	for _, e := range all {
		eb = AppendEntry(eb[:0], e)
		b = appendUvarint(b, uint64(len(eb)))
		b = append(b, eb...)
	}
	repos := slices.Sorted(maps.Keys(s.view))
	b = appendUvarint(b, uint64(len(repos)))
	for _, name := range repos {
		r := s.view[name]
		b = appendString(b, name)
		ms := slices.Sorted(maps.Keys(r.Manifests))
		b = appendUvarint(b, uint64(len(ms)))
		for _, m := range ms {
			b = appendString(b, m)
		}
		ts := slices.Sorted(maps.Keys(r.Tags))
		b = appendUvarint(b, uint64(len(ts)))
		for _, t := range ts {
			b = appendString(b, t)
			b = appendString(b, r.Tags[t])
		}
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

// UnmarshalBinary replaces s with the state b encodes. Any truncation, bit flip or non-canonical
// form is an error (wrapping ErrFormat) and leaves s unchanged.
func (s *State) UnmarshalBinary(b []byte) error {
	if len(b) < len(stateMagic)+1+32 || string(b[:len(stateMagic)]) != stateMagic {
		return formatErr("not a peers state")
	}
	if v := b[len(stateMagic)]; v != stateVersion {
		return formatErr("state version %d", v)
	}
	body, sum := b[:len(b)-32], b[len(b)-32:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return formatErr("state checksum mismatch")
	}
	n, err := decodeStateBody(body[len(stateMagic)+1:])
	if err != nil {
		return err
	}
	*s = *n
	return nil
}

// decodeStateBody parses what follows the version byte, checksum excluded.
func decodeStateBody(b []byte) (*State, error) {
	r := reader{b: b}
	n := New()
	maxStamp := r.stamp()
	n.conflicts = r.uvarint()
	count := r.count(1)
	var prev Digest
	for i := 0; i < count && r.err == nil; i++ {
		l := r.uvarint()
		if l > uint64(len(r.b)) {
			r.fail("entry length %d", l)
			break
		}
		e, err := DecodeEntry(r.bytes(int(l)))
		if err != nil {
			r.fail("entry %d: %v", i, err)
			break
		}
		kh := KeyHash(e.Key)
		if i > 0 && bytes.Compare(prev[:], kh[:]) >= 0 {
			r.fail("entries out of order")
			break
		}
		prev = kh
		n.merge(kh, e, false)
	}
	if n.max.Less(maxStamp) {
		n.max = maxStamp
	}
	repos := r.count(1)
	prevRepo := ""
	for i := 0; i < repos && r.err == nil; i++ {
		name := r.string()
		if name == "" || i > 0 && name <= prevRepo {
			r.fail("repositories out of order")
			break
		}
		prevRepo = name
		repo := Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
		ms := r.count(1)
		for j, prev := 0, ""; j < ms && r.err == nil; j++ {
			m := r.string()
			if m == "" || j > 0 && m <= prev {
				r.fail("manifests out of order")
			}
			prev = m
			repo.Manifests[m] = struct{}{}
		}
		ts := r.count(2)
		for j, prev := 0, ""; j < ts && r.err == nil; j++ {
			t, target := r.string(), r.string()
			if t == "" || j > 0 && t <= prev {
				r.fail("tags out of order")
			}
			prev = t
			repo.Tags[t] = target
		}
		if ms == 0 && ts == 0 {
			r.fail("empty repository %q", name)
		}
		n.view[name] = repo
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return n, nil
}
