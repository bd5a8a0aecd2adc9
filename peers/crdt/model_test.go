package crdt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

type replica struct {
	s *State
	c *Clock
	v View
}

func newReplica(name string, base *int64, skew int64) *replica {
	return &replica{s: New(), v: View{}, c: NewClock(name, func() time.Time { return time.UnixMilli(*base + skew) })}
}

func (r *replica) repo(name string) Repo {
	rp, ok := r.v[name]
	if !ok {
		rp = Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
		r.v[name] = rp
	}
	return rp
}

// syncPair runs one Sync of a against b; drop decides, per message part, whether it is lost.
func syncPair(a, b *State, drop func() bool) {
	y := NewSync(a, b.Root())
	for p := y.Next(); len(p) > 0; p = y.Next() {
		ss := b.Summaries(p)
		ss = slices.DeleteFunc(ss, func(Summary) bool { return drop() })
		y.Receive(ss)
	}
	for _, e := range b.Entries(y.Want()) {
		if !drop() {
			a.Merge(e)
		}
	}
	for _, e := range y.Offer() {
		if !drop() {
			b.Merge(e)
		}
	}
}

func never() bool { return false }

// lwwModel applies the LWW rule to every event.
func lwwModel(events []Entry) (View, map[Key]Entry) {
	win := map[Key]Entry{}
	for _, e := range events {
		if cur, ok := win[e.Key]; !ok || Wins(e, cur) {
			win[e.Key] = e
		}
	}
	v := View{}
	for _, e := range win {
		if e.Deleted {
			continue
		}
		rp, ok := v[e.Repo]
		if !ok {
			rp = Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
			v[e.Repo] = rp
		}
		if e.Kind == Manifest {
			rp.Manifests[e.Name] = struct{}{}
		} else {
			rp.Tags[e.Name] = e.Target
		}
	}
	return v, win
}

func localOp(t *rapid.T, r *replica) {
	repo := rapid.SampledFrom([]string{"r1", "r2"}).Draw(t, "repo")
	m := rapid.SampledFrom([]string{"sha256:1", "sha256:2", "sha256:3", "sha256:4"}).Draw(t, "manifest")
	tag := rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "tag")
	rp := r.repo(repo)
	switch rapid.IntRange(0, 3).Draw(t, "op") {
	case 0: // push (or re-push after a delete)
		rp.Manifests[m] = struct{}{}
	case 1: // tag or retag
		rp.Manifests[m] = struct{}{}
		rp.Tags[tag] = m
	case 2:
		delete(rp.Tags, tag)
	case 3:
		delete(rp.Manifests, m)
	}
}

func TestModelReplicasConvergeToSequentialLWW(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := int64(1_000_000)
		n := rapid.IntRange(3, 5).Draw(t, "replicas")
		reps := make([]*replica, n)
		for i := range reps {
			reps[i] = newReplica(fmt.Sprintf("n%d", i), &base, rapid.Int64Range(-5000, 5000).Draw(t, "skew"))
		}
		var events []Entry
		drop := func() bool { return rapid.IntRange(0, 3).Draw(t, "drop") == 0 }
		steps := rapid.IntRange(1, 60).Draw(t, "steps")
		for range steps {
			base += rapid.Int64Range(-2, 50).Draw(t, "tick")
			i := rapid.IntRange(0, n-1).Draw(t, "who")
			r := reps[i]
			switch rapid.IntRange(0, 3).Draw(t, "kind") {
			case 0, 1:
				localOp(t, r)
				events = append(events, r.s.Observe(r.v, r.c)...)
			case 2:
				j := (i + rapid.IntRange(1, n-1).Draw(t, "peer")) % n
				if rapid.Bool().Draw(t, "partial") {
					syncPair(r.s, reps[j].s, drop)
				} else {
					syncPair(r.s, reps[j].s, never)
				}
			case 3: // the applier makes the registry hold Live; observing it stamps nothing
				r.v = r.s.Live()
				if got := r.s.Observe(r.v, r.c); len(got) != 0 {
					t.Fatalf("observing applied state stamped %v", got)
				}
			}
		}
		for range 2 {
			for i := range reps {
				for j := range reps {
					if i != j {
						syncPair(reps[i].s, reps[j].s, never)
					}
				}
			}
		}
		want, win := lwwModel(events)
		for i, r := range reps {
			if r.s.Root() != reps[0].s.Root() {
				t.Fatalf("replica %d root differs", i)
			}
			if got := r.s.Live(); !reflect.DeepEqual(got, want) {
				t.Fatalf("replica %d Live %v, model %v", i, got, want)
			}
			for _, e := range events {
				if got, _ := r.s.Get(e.Key); e.Deleted && got.Stamp.Less(e.Stamp) {
					t.Fatalf("delete %v undone by older %v", e, got)
				}
			}
		}
		if reps[0].s.Len() != len(win) {
			t.Fatalf("Len %d, model %d", reps[0].s.Len(), len(win))
		}
	})
}

func TestForgetAfterPartitionResurrectsNoPurgedDelete(t *testing.T) {
	for _, forget := range []bool{true, false} {
		t.Run(fmt.Sprintf("forget=%v", forget), func(t *testing.T) {
			base := int64(1_000_000)
			a, b, c := newReplica("a", &base, 0), newReplica("b", &base, 7), newReplica("c", &base, -3)
			reps := []*replica{a, b, c}
			all := func(rs ...*replica) {
				for range 2 {
					for _, x := range rs {
						for _, y := range rs {
							if x != y {
								syncPair(x.s, y.s, never)
							}
						}
					}
				}
			}
			for i := range 20 {
				rp := a.repo("r")
				d := fmt.Sprintf("sha256:%d", i)
				rp.Manifests[d] = struct{}{}
				rp.Tags[fmt.Sprintf("t%d", i)] = d
				base++
				a.s.Observe(a.v, a.c)
			}
			all(reps...)
			for _, r := range reps {
				r.v = r.s.Live()
				r.s.Observe(r.v, r.c)
			}
			cut := c.s.MaxStamp() // c is in sync here; then it is partitioned away
			base += 1000
			for i := range 10 {
				delete(a.v["r"].Manifests, fmt.Sprintf("sha256:%d", i))
				delete(a.v["r"].Tags, fmt.Sprintf("t%d", i))
			}
			a.s.Observe(a.v, a.c)
			rp := c.repo("away")
			rp.Manifests["sha256:away"] = struct{}{}
			rp.Tags["latest"] = "sha256:away"
			c.s.Observe(c.v, c.c)
			all(a, b)
			base += 1000
			purge := a.c.Now()
			if a.s.PurgeTombstones(purge) != 20 || b.s.PurgeTombstones(purge) != 20 {
				t.Fatal("tombstones not purged")
			}
			if forget {
				if c.s.Forget(cut) == 0 {
					t.Fatal("Forget dropped nothing")
				}
			}
			all(reps...)
			for _, r := range reps {
				r.v = r.s.Live()
				if got := r.s.Observe(r.v, r.c); len(got) != 0 {
					t.Fatalf("%s: applying stamped %v", r.c.Node(), got)
				}
			}
			all(reps...)
			resurrected := false
			for _, r := range reps {
				live := r.s.Live()
				if _, ok := live["r"].Manifests["sha256:3"]; ok {
					resurrected = true
				}
				if live["away"].Tags["latest"] != "sha256:away" {
					t.Fatalf("%s lost the away change", r.c.Node())
				}
				if len(live["r"].Manifests) != 10 && forget {
					t.Fatalf("%s holds %d manifests", r.c.Node(), len(live["r"].Manifests))
				}
			}
			if resurrected == forget {
				t.Fatalf("resurrected=%v with forget=%v", resurrected, forget)
			}
		})
	}
}

// refRoot is an independent oracle of the index digest (docs/peers.md).
func refRoot(refs []LeafRef, depth int) Digest {
	if len(refs) == 0 {
		return Digest{}
	}
	if len(refs) <= 16 || depth == 64 {
		b := []byte("trowfs.peers.leaf.v1\x00")
		b = binary.BigEndian.AppendUint32(b, uint32(len(refs)))
		for _, r := range refs {
			b = append(append(b, r.KeyHash[:]...), r.EntryHash[:]...)
		}
		return sha256.Sum256(b)
	}
	b := []byte("trowfs.peers.node.v1\x00")
	for i := 0; i < 16; i++ {
		var sub []LeafRef
		for _, r := range refs {
			if nibble(&r.KeyHash, depth) == i {
				sub = append(sub, r)
			}
		}
		d := refRoot(sub, depth+1)
		b = append(b, d[:]...)
	}
	return sha256.Sum256(b)
}

func stateRefRoot(s *State) Digest {
	var refs []LeafRef
	for _, e := range s.All() {
		refs = append(refs, LeafRef{KeyHash(e.Key), EntryHash(e)})
	}
	slices.SortFunc(refs, cmpRef)
	return refRoot(refs, 0)
}

func genEntry(t *rapid.T, keys int) Entry {
	i := rapid.IntRange(0, keys).Draw(t, "key")
	e := Entry{Key: Key{Repo: fmt.Sprintf("r%d", i%7), Name: fmt.Sprintf("n%d", i)},
		Stamp: Stamp{Wall: rapid.Int64Range(1, 20).Draw(t, "wall"), Node: rapid.SampledFrom([]string{"a", "b"}).Draw(t, "node")}}
	if i%2 == 0 {
		e.Kind = Manifest
		e.Deleted = rapid.Bool().Draw(t, "del")
	} else {
		e.Kind = Tag
		if rapid.Bool().Draw(t, "del") {
			e.Deleted = true
		} else {
			e.Target = rapid.SampledFrom([]string{"x", "y"}).Draw(t, "target")
		}
	}
	return e
}

func TestRootIndependentOfInsertionOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		es := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) Entry { return genEntry(t, 400) }), 0, 600).Draw(t, "entries")
		a, b := New(), New()
		for _, e := range es {
			a.Merge(e)
		}
		perm := rapid.Permutation(es).Draw(t, "perm")
		for _, e := range perm {
			b.Merge(e)
		}
		if a.Root() != b.Root() || a.Root() != stateRefRoot(a) {
			t.Fatal("roots differ by insertion order or from the oracle")
		}
		cut := Stamp{Wall: rapid.Int64Range(0, 21).Draw(t, "cut")}
		a.PurgeTombstones(cut)
		if a.Root() != stateRefRoot(a) {
			t.Fatal("root after purge differs from the oracle")
		}
		b.Forget(cut)
		if b.Root() != stateRefRoot(b) {
			t.Fatal("root after forget differs from the oracle")
		}
	})
}

func TestSyncFindsExactlyTheBruteForceDifferences(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		gen := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) Entry { return genEntry(t, 2000) }), 0, 500)
		a, b := New(), New()
		for _, e := range gen.Draw(t, "common") {
			a.Merge(e)
			b.Merge(e)
		}
		for _, e := range gen.Draw(t, "a") {
			a.Merge(e)
		}
		for _, e := range gen.Draw(t, "b") {
			b.Merge(e)
		}
		y := NewSync(a, b.Root())
		for p := y.Next(); len(p) > 0; p = y.Next() {
			ss, err := DecodeSummaries(EncodeSummaries(b.Summaries(p)), len(p))
			if err != nil {
				t.Fatal(err)
			}
			y.Receive(ss)
		}
		var want, offer []Digest
		for _, e := range b.All() {
			if mine, ok := a.Get(e.Key); !ok || mine != e {
				want = append(want, KeyHash(e.Key))
			}
		}
		for _, e := range a.All() {
			if theirs, ok := b.Get(e.Key); !ok || theirs != e {
				offer = append(offer, KeyHash(e.Key))
			}
		}
		slices.SortFunc(want, func(x, y Digest) int { return bytes.Compare(x[:], y[:]) })
		slices.SortFunc(offer, func(x, y Digest) int { return bytes.Compare(x[:], y[:]) })
		var gotOffer []Digest
		for _, e := range y.Offer() {
			gotOffer = append(gotOffer, KeyHash(e.Key))
		}
		if !slices.Equal(y.Want(), want) || !slices.Equal(gotOffer, offer) {
			t.Fatalf("want %d/%d offer %d/%d", len(y.Want()), len(want), len(gotOffer), len(offer))
		}
	})
}
