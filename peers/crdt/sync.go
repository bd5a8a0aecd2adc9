package crdt

import (
	"bytes"
	"slices"
)

// Sync drives one comparison with one peer, purely: the caller ships the paths Next returns to the
// peer, feeds the peer's Summaries back with Receive, and when Next is empty exchanges entries
// (Want, Offer). One level of the index per round trip; only the children whose digests differ are
// descended into, so it costs O(k log n) in the number k of differing registers. A Summary that was
// not asked for, or that is inconsistent (its digest does not match its children or leaves), is
// ignored; a path asked and not answered is simply not descended into (a partial sync: the next
// one finishes it).
type Sync struct {
	s      *State
	asked  []Path
	want   map[Digest]struct{}
	offer  map[Digest]struct{}
	rounds int
}

// NewSync starts a comparison of s with a peer whose root is remoteRoot. When the roots are equal
// there is nothing to ask; when the peer is empty everything is offered without a round trip.
func NewSync(s *State, remoteRoot Digest) *Sync {
	y := &Sync{s: s, want: map[Digest]struct{}{}, offer: map[Digest]struct{}{}}
	switch root := s.Root(); {
	case root == remoteRoot:
	case remoteRoot.IsZero():
		y.offerAll(s.index.collect(nil))
	default:
		y.asked = []Path{""}
	}
	return y
}

// Next returns the paths to ask the peer for next; empty when the descent is done.
func (y *Sync) Next() []Path { return slices.Clone(y.asked) }

// Rounds returns how many answers Receive took.
func (y *Sync) Rounds() int { return y.rounds }

// Receive takes the peer's answer to the last Next.
func (y *Sync) Receive(remote []Summary) {
	y.rounds++
	asked := make(map[Path]bool, len(y.asked))
	for _, p := range y.asked {
		asked[p] = true
	}
	var next []Path
	for i := range remote {
		r := &remote[i]
		if !asked[r.Path] || !r.check() {
			continue
		}
		asked[r.Path] = false // answered once
		next = y.compare(r, next)
	}
	slices.Sort(next)
	y.asked = slices.Compact(next)
}

// compare sets the node r of the peer against this state's node at the same path, records wants
// and offers, and appends the children to descend into.
func (y *Sync) compare(r *Summary, next []Path) []Path {
	local := y.s.index.summary(r.Path)
	if local.Digest == r.Digest {
		return next
	}
	if r.Children == nil {
		y.compareLeaves(r.Leaves, y.s.index.refsUnder(r.Path))
		return next
	}
	for i := 0; i < Fanout; i++ {
		p := r.Path.Child(i)
		var mine Digest
		if local.Children != nil {
			mine = local.Children[i]
		} else {
			mine = y.s.index.summary(p).Digest // a virtual child of a local leaf
		}
		switch {
		case mine == r.Children[i]:
		case r.Children[i].IsZero():
			y.offerAll(y.s.index.refsUnder(p))
		default:
			next = append(next, p)
		}
	}
	return next
}

// compareLeaves merges two key-hash ordered lists.
func (y *Sync) compareLeaves(theirs, mine []LeafRef) {
	i, j := 0, 0
	for i < len(theirs) || j < len(mine) {
		var c int
		switch {
		case i == len(theirs):
			c = 1
		case j == len(mine):
			c = -1
		default:
			c = bytes.Compare(theirs[i].KeyHash[:], mine[j].KeyHash[:])
		}
		switch {
		case c < 0:
			y.want[theirs[i].KeyHash] = struct{}{}
			i++
		case c > 0:
			y.offer[mine[j].KeyHash] = struct{}{}
			j++
		default:
			if theirs[i].EntryHash != mine[j].EntryHash {
				y.want[theirs[i].KeyHash] = struct{}{}
				y.offer[mine[j].KeyHash] = struct{}{}
			}
			i++
			j++
		}
	}
}

func (y *Sync) offerAll(refs []LeafRef) {
	for _, r := range refs {
		y.offer[r.KeyHash] = struct{}{}
	}
}

// Want returns the key hashes the peer has and this state lacks or holds differently (fetch them
// with the peer's Entries and Merge them), in increasing order.
func (y *Sync) Want() []Digest {
	out := make([]Digest, 0, len(y.want))
	for kh := range y.want {
		out = append(out, kh)
	}
	slices.SortFunc(out, func(a, b Digest) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// Offer returns this state's entries the peer lacks or holds differently (send them, the peer
// Merges them), in key-hash order.
func (y *Sync) Offer() []Entry {
	khs := make([]Digest, 0, len(y.offer))
	for kh := range y.offer {
		khs = append(khs, kh)
	}
	slices.SortFunc(khs, func(a, b Digest) int { return bytes.Compare(a[:], b[:]) })
	return y.s.Entries(khs)
}
