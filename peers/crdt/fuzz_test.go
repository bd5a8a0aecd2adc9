package crdt

import (
	"bytes"
	"math"
	"testing"
	"time"
)

func seedState() []byte {
	s := New()
	for _, e := range vectorEntries() {
		s.Merge(e)
	}
	s.Observe(View{"lib/app": {Manifests: map[string]struct{}{"sha256:01": {}}, Tags: map[string]string{"latest": "sha256:01"}}},
		NewClock("a", func() time.Time { return time.UnixMilli(1) }))
	b, _ := s.MarshalBinary()
	return b
}

// FuzzUnmarshalBinary: any input is rejected with an error or accepted canonically, never a panic.
func FuzzUnmarshalBinary(f *testing.F) {
	f.Add(seedState())
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New()
		if s.UnmarshalBinary(b) != nil {
			return
		}
		if back, _ := s.MarshalBinary(); !bytes.Equal(back, b) {
			t.Fatalf("accepted a non-canonical state")
		}
	})
}

// FuzzDecodeStateBody reaches past the checksum, which random input never passes.
func FuzzDecodeStateBody(f *testing.F) {
	seed := seedState()
	f.Add(seed[len(stateMagic)+1 : len(seed)-32])
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeStateBody(b)
		if err != nil {
			return
		}
		if s.Root() != stateRefRoot(s) {
			t.Fatal("decoded state's root differs from the oracle")
		}
	})
}

// FuzzDecodeWire: the Sync message decoders never panic and round-trip what they accept.
func FuzzDecodeWire(f *testing.F) {
	s := New()
	for _, e := range vectorEntries() {
		s.Merge(e)
	}
	f.Add(EncodeSummaries(s.Summaries([]Path{"", "a"})))
	f.Add(EncodeEntries(s.All()))
	f.Add(EncodePaths([]Path{"", "0", "1f"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ss, err := DecodeSummaries(b, math.MaxInt); err == nil && !bytes.Equal(EncodeSummaries(ss), b) {
			t.Fatal("summaries not canonical")
		}
		if es, err := DecodeEntries(b, math.MaxInt); err == nil && !bytes.Equal(EncodeEntries(es), b) {
			t.Fatal("entries not canonical")
		}
		if ps, err := DecodePaths(b, math.MaxInt); err == nil && !bytes.Equal(EncodePaths(ps), b) {
			t.Fatal("paths not canonical")
		}
		DecodeDigests(b, math.MaxInt)
	})
}
