package peers

import (
	"crypto/sha256"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// fakeReplica is a flat LWW map with a one-level "index" (the root summary lists every leaf): it
// behaves like crdt.State for up to crdt.LeafMax registers, which is all these tests need.
type fakeReplica struct {
	node    string
	clock   crdt.Stamp
	entries map[crdt.Key]crdt.Entry
	last    crdt.View
}

func newFake(node string) *fakeReplica {
	return &fakeReplica{node: node, entries: map[crdt.Key]crdt.Entry{}}
}

func less(a, b crdt.Stamp) bool {
	if a.Wall != b.Wall {
		return a.Wall < b.Wall
	}
	if a.Logical != b.Logical {
		return a.Logical < b.Logical
	}
	return a.Node < b.Node
}

func keyHash(k crdt.Key) crdt.Digest {
	return sha256.Sum256([]byte(k.Repo + "\x00" + string(k.Kind) + "\x00" + k.Name))
}

func (f *fakeReplica) EncodeEntry(e crdt.Entry) []byte { b, _ := json.Marshal(e); return b }
func (f *fakeReplica) DecodeEntry(b []byte) (crdt.Entry, error) {
	var e crdt.Entry
	err := json.Unmarshal(b, &e)
	return e, err
}
func (f *fakeReplica) leaves() []crdt.LeafRef {
	var ls []crdt.LeafRef
	for k, e := range f.entries {
		ls = append(ls, crdt.LeafRef{KeyHash: keyHash(k), EntryHash: sha256.Sum256(f.EncodeEntry(e))})
	}
	sort.Slice(ls, func(i, j int) bool { return string(ls[i].KeyHash[:]) < string(ls[j].KeyHash[:]) })
	return ls
}
func (f *fakeReplica) Root() crdt.Digest {
	h := sha256.New()
	for _, l := range f.leaves() {
		h.Write(l.KeyHash[:])
		h.Write(l.EntryHash[:])
	}
	var d crdt.Digest
	copy(d[:], h.Sum(nil))
	return d
}
func (f *fakeReplica) Len() int          { return len(f.entries) }
func (f *fakeReplica) Conflicts() uint64 { return 0 }
func (f *fakeReplica) Now() crdt.Stamp {
	w := time.Now().UnixMilli()
	if w > f.clock.Wall {
		f.clock = crdt.Stamp{Wall: w, Node: f.node}
	} else {
		f.clock = crdt.Stamp{Wall: f.clock.Wall, Logical: f.clock.Logical + 1, Node: f.node}
	}
	return f.clock
}
func (f *fakeReplica) ObserveClock(s crdt.Stamp) {
	if less(f.clock, s) {
		f.clock = crdt.Stamp{Wall: s.Wall, Logical: s.Logical, Node: f.node}
	}
}
func (f *fakeReplica) Clock() crdt.Stamp { return f.clock }
func (f *fakeReplica) Merge(e crdt.Entry) bool {
	f.ObserveClock(e.Stamp)
	old, ok := f.entries[e.Key]
	if ok && !less(old.Stamp, e.Stamp) {
		return false
	}
	f.entries[e.Key] = e
	return true
}
func (f *fakeReplica) set(k crdt.Key, target string, del bool, out *[]crdt.Entry) {
	cur, ok := f.entries[k]
	if ok && cur.Deleted == del && cur.Target == target {
		return
	}
	e := crdt.Entry{Key: k, Target: target, Deleted: del, Stamp: f.Now()}
	f.entries[k] = e
	*out = append(*out, e)
}
func (f *fakeReplica) Observe(v crdt.View) []crdt.Entry {
	var out []crdt.Entry
	for repo, r := range v {
		for m := range r.Manifests {
			if _, ok := f.last[repo].Manifests[m]; !ok {
				f.set(crdt.Key{Repo: repo, Kind: crdt.Manifest, Name: m}, "", false, &out)
			}
		}
		for t, d := range r.Tags {
			if old, ok := f.last[repo].Tags[t]; !ok || old != d {
				f.set(crdt.Key{Repo: repo, Kind: crdt.Tag, Name: t}, d, false, &out)
			}
		}
	}
	for repo, r := range f.last {
		for m := range r.Manifests {
			if _, ok := v[repo].Manifests[m]; !ok {
				f.set(crdt.Key{Repo: repo, Kind: crdt.Manifest, Name: m}, "", true, &out)
			}
		}
		for t := range r.Tags {
			if _, ok := v[repo].Tags[t]; !ok {
				f.set(crdt.Key{Repo: repo, Kind: crdt.Tag, Name: t}, "", true, &out)
			}
		}
	}
	f.last = v
	return out
}
func (f *fakeReplica) Live() crdt.View {
	v := crdt.View{}
	for k, e := range f.entries {
		if e.Deleted {
			continue
		}
		r, ok := v[k.Repo]
		if !ok {
			r = crdt.Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
			v[k.Repo] = r
		}
		if k.Kind == crdt.Manifest {
			r.Manifests[k.Name] = struct{}{}
		} else {
			r.Tags[k.Name] = e.Target
		}
	}
	return v
}
func (f *fakeReplica) Summaries(paths []crdt.Path) []crdt.Summary {
	var out []crdt.Summary
	for _, p := range paths {
		if p == "" {
			out = append(out, crdt.Summary{Path: "", Count: len(f.entries), Digest: f.Root(), Leaves: f.leaves()})
		}
	}
	return out
}
func (f *fakeReplica) Entries(khs []crdt.Digest) []crdt.Entry {
	want := map[crdt.Digest]bool{}
	for _, k := range khs {
		want[k] = true
	}
	var out []crdt.Entry
	for k, e := range f.entries {
		if want[keyHash(k)] {
			out = append(out, e)
		}
	}
	return out
}
func (f *fakeReplica) PurgeTombstones(cut crdt.Stamp) int {
	n := 0
	for k, e := range f.entries {
		if e.Deleted && less(e.Stamp, cut) {
			delete(f.entries, k)
			n++
		}
	}
	return n
}
func (f *fakeReplica) Forget(cut crdt.Stamp) int {
	n := 0
	for k, e := range f.entries {
		if less(e.Stamp, cut) {
			delete(f.entries, k)
			n++
		}
	}
	return n
}
func (f *fakeReplica) MarshalBinary() ([]byte, error) {
	var es []crdt.Entry
	for _, e := range f.entries {
		es = append(es, e)
	}
	return json.Marshal(struct {
		E []crdt.Entry
		L crdt.View
	}{es, f.last})
}
func (f *fakeReplica) UnmarshalBinary(b []byte) error {
	var v struct {
		E []crdt.Entry
		L crdt.View
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	for _, e := range v.E {
		f.entries[e.Key] = e
	}
	f.last = v.L
	return nil
}
func (f *fakeReplica) NewSync(remote crdt.Digest) Syncer { return &fakeSync{f: f} }

type fakeSync struct {
	f      *fakeReplica
	asked  bool
	remote map[crdt.Digest]crdt.Digest
}

func (y *fakeSync) Next() []crdt.Path {
	if y.asked {
		return nil
	}
	y.asked = true
	return []crdt.Path{""}
}
func (y *fakeSync) Receive(ss []crdt.Summary) {
	y.remote = map[crdt.Digest]crdt.Digest{}
	for _, s := range ss {
		for _, l := range s.Leaves {
			y.remote[l.KeyHash] = l.EntryHash
		}
	}
}
func (y *fakeSync) Want() []crdt.Digest {
	mine := map[crdt.Digest]crdt.Digest{}
	for _, l := range y.f.leaves() {
		mine[l.KeyHash] = l.EntryHash
	}
	var out []crdt.Digest
	for k, h := range y.remote {
		if mine[k] != h {
			out = append(out, k)
		}
	}
	return out
}
func (y *fakeSync) Offer() []crdt.Entry {
	var out []crdt.Entry
	for k, e := range y.f.entries {
		if y.remote[keyHash(k)] != sha256.Sum256(y.f.EncodeEntry(e)) {
			out = append(out, e)
		}
	}
	return out
}

// fakeView is a registry whose content a test sets.
type fakeView struct {
	mu sync.Mutex // guards v
	v  crdt.View
}

func (f *fakeView) View() (crdt.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := crdt.View{}
	for k, r := range f.v {
		out[k] = r
	}
	return out, nil
}
func (f *fakeView) set(v crdt.View) { f.mu.Lock(); f.v = v; f.mu.Unlock() }
