package crdt

import (
	"crypto/sha256"
	"fmt"
)

// DiffCost is what one Sync between two states cost on the wire.
type DiffCost struct {
	N, K       int // registers per state (manifests plus tags), differences
	RoundTrips int // Summaries exchanges plus the one entries exchange
	Bytes      int // every encoded message, both directions
	Found      int // registers that moved (Want plus Offer)
	Converged  bool
}

func (c DiffCost) String() string {
	return fmt.Sprintf("n=%d k=%d: %d bytes in %d round trips, %d registers moved, converged=%v",
		c.N, c.K, c.Bytes, c.RoundTrips, c.Found, c.Converged)
}

// MeasureDiff builds two states of n manifest registers plus n/10 tag registers, equal except for k
// registers (a third added only on one side, a third only on the other, a third retagged or deleted
// on one side), runs a full Sync with every message encoded as it would be on the wire, and
// reports its cost. Deterministic; the bench suite calls it.
func MeasureDiff(n, k int) DiffCost {
	a, b := New(), New()
	digest := func(i int) string { return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(fmt.Sprint(i)))) }
	for i := 0; i < n; i++ {
		e := Entry{Key: Key{Repo: fmt.Sprintf("repo%d", i%1000), Kind: Manifest, Name: digest(i)}, Stamp: Stamp{Wall: int64(1 + i), Node: "a"}}
		a.Merge(e)
		b.Merge(e)
		if i%10 == 0 {
			t := Entry{Key: Key{Repo: e.Repo, Kind: Tag, Name: fmt.Sprintf("v%d", i)}, Target: e.Name, Stamp: e.Stamp}
			a.Merge(t)
			b.Merge(t)
		}
	}
	for j := 0; j < k; j++ {
		st := Stamp{Wall: int64(n + 10 + j), Node: "b"}
		switch j % 3 {
		case 0:
			a.Merge(Entry{Key: Key{"new", Manifest, digest(n + j)}, Stamp: st})
		case 1:
			b.Merge(Entry{Key: Key{"new", Manifest, digest(n + j)}, Stamp: st})
		default:
			i := j * 10 * (n / (10 * (k + 1)))
			b.Merge(Entry{Key: Key{fmt.Sprintf("repo%d", i%1000), Tag, fmt.Sprintf("v%d", i)}, Deleted: true, Stamp: st})
		}
	}
	cost := DiffCost{N: a.Len(), K: k}
	root := b.Root()
	cost.Bytes += len(root)
	y := NewSync(a, root)
	for p := y.Next(); len(p) > 0; p = y.Next() {
		req := EncodePaths(p)
		dp, _ := DecodePaths(req, len(p))
		resp := EncodeSummaries(b.Summaries(dp))
		ss, _ := DecodeSummaries(resp, len(dp))
		y.Receive(ss)
		cost.Bytes += len(req) + len(resp)
		cost.RoundTrips++
	}
	want, offer := y.Want(), y.Offer()
	wreq := EncodeDigests(want)
	wresp := EncodeEntries(b.Entries(want))
	oreq := EncodeEntries(offer)
	cost.Bytes += len(wreq) + len(wresp) + len(oreq)
	cost.RoundTrips++
	got, _ := DecodeEntries(wresp, len(want))
	for _, e := range got {
		a.Merge(e)
	}
	sent, _ := DecodeEntries(oreq, len(offer))
	for _, e := range sent {
		b.Merge(e)
	}
	cost.Found = len(want) + len(offer)
	cost.Converged = a.Root() == b.Root()
	return cost
}
