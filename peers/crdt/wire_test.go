package crdt

import (
	"math"
	"runtime"
	"testing"
)

// allocated returns the bytes f allocated on the heap.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestWireDecodersBoundAllocation: a peer's answer (or an authenticated request) cannot make
// a decoder allocate far more than the message's own size, whatever count it claims, and a caller
// can refuse more elements than it asked for before any of them is decoded.
func TestWireDecodersBoundAllocation(t *testing.T) {
	const size = 1 << 20
	// As many elements as fit in about a megabyte, counted truthfully. A decoder that reserved room
	// for every claimed element (96 bytes per 1-byte entry claimed), or built a 16-digest slice for
	// every 5-byte inner summary without children before checking any limit, would let a 1 MiB
	// message cost about a hundred times its size.
	bomb := func(elem []byte) []byte {
		var body []byte
		for len(body) < size {
			body = append(body, elem...)
		}
		return append(appendUvarint([]byte{wireVersion}, uint64(len(body)/len(elem))), body...)
	}
	innerEmpty := []byte{0, 0, 1, 0, 0}
	cases := []struct {
		name   string
		msg    []byte
		decode func([]byte) error
	}{
		{"entries", bomb([]byte{0}), func(b []byte) error { _, err := DecodeEntries(b, 16384); return err }},
		{"paths", bomb([]byte{0}), func(b []byte) error { _, err := DecodePaths(b, 4096); return err }},
		{"digests", bomb(make([]byte, 32)), func(b []byte) error { _, err := DecodeDigests(b, 16384); return err }},
		{"summaries", bomb(innerEmpty), func(b []byte) error { _, err := DecodeSummaries(b, 4096); return err }},
		// Without a caller's limit the allocation still follows the bytes actually decoded.
		{"entries-unlimited", bomb([]byte{0}), func(b []byte) error { _, err := DecodeEntries(b, math.MaxInt); return err }},
	}
	for _, c := range cases {
		var err error
		got := allocated(func() { err = c.decode(c.msg) })
		if err == nil {
			t.Errorf("%s: decoded %d claimed elements without error", c.name, len(c.msg))
		}
		if limit := uint64(4 * len(c.msg)); got > limit {
			t.Errorf("%s: a %d-byte message allocated %d bytes (more than %d)", c.name, len(c.msg), got, limit)
		}
	}

	// A caller that asked for 2 summaries refuses a third before decoding it.
	s := New()
	for _, e := range vectorEntries() {
		s.Merge(e)
	}
	three := EncodeSummaries(s.Summaries([]Path{"", "", ""}))
	if _, err := DecodeSummaries(three, 2); err == nil {
		t.Error("DecodeSummaries accepted 3 summaries with a limit of 2")
	}
	if ss, err := DecodeSummaries(three, 3); err != nil || len(ss) != 3 {
		t.Errorf("DecodeSummaries(limit 3) = %d, %v", len(ss), err)
	}
	es := EncodeEntries(s.All())
	if _, err := DecodeEntries(es, 2); err == nil {
		t.Error("DecodeEntries accepted 3 entries with a limit of 2")
	}
	if _, err := DecodeDigests(EncodeDigests(make([]Digest, 5)), 4); err == nil {
		t.Error("DecodeDigests accepted 5 digests with a limit of 4")
	}
	if _, err := DecodePaths(EncodePaths([]Path{"", "0"}), 1); err == nil {
		t.Error("DecodePaths accepted 2 paths with a limit of 1")
	}
}
