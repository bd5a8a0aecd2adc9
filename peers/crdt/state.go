package crdt

import (
	"bytes"
	"maps"
	"slices"
)

// Kind says what a register describes.
type Kind uint8

const (
	Manifest Kind = 'm' // Key.Name is a manifest digest ("sha256:<hex>"); present or deleted
	Tag      Kind = 't' // Key.Name is a tag; Entry.Target is the manifest digest it points at
)

// Key names one register: a manifest or a tag within a repository.
type Key struct {
	Repo string
	Kind Kind
	Name string
}

// Entry is one register's value and the stamp of the event that wrote it. The greater stamp wins.
type Entry struct {
	Key
	Target  string // Tag: the manifest digest; Manifest: empty
	Deleted bool   // a tombstone: the manifest or tag was deleted
	Stamp   Stamp
}

// Repo is what one repository holds: its manifests (by digest) and its tags (tag -> manifest digest).
type Repo struct {
	Manifests map[string]struct{}
	Tags      map[string]string
}

// View is what a registry holds: repository name -> contents. Blobs are not part of it: they follow
// by reference from manifests, and dangling blobs are not replicated.
type View map[string]Repo

// Wins reports whether a replaces b in a join: the greater stamp wins, and two different entries
// with equal stamps (possible only from a buggy peer) are ordered by their canonical encodings, so
// that every replica picks the same one.
func Wins(a, b Entry) bool {
	if c := a.Stamp.Compare(b.Stamp); c != 0 {
		return c > 0
	}
	return bytes.Compare(EncodeEntry(a), EncodeEntry(b)) > 0
}

// reg is one register and its entry hash.
type reg struct {
	e  Entry
	eh Digest
}

// State is one replica: every register (tombstones included), the last View observed from the local
// registry, and a Merkle index over the registers. Not safe for concurrent use; callers lock.
type State struct {
	regs      map[Digest]*reg // by KeyHash
	index     *inode
	view      View
	max       Stamp  // the greatest stamp merged or created
	conflicts uint64 // see Conflicts
}

// New returns an empty state.
func New() *State {
	return &State{regs: map[Digest]*reg{}, index: &inode{}, view: View{}}
}

// Get returns the register for k.
func (s *State) Get(k Key) (Entry, bool) {
	r, ok := s.regs[KeyHash(k)]
	if !ok {
		return Entry{}, false
	}
	return r.e, true
}

// Merge folds e in (join: the greater stamp wins, see Wins). It reports whether the state changed.
// An invalid entry (see Entry.Validate) is ignored.
func (s *State) Merge(e Entry) bool {
	if e.Validate() != nil {
		return false
	}
	return s.merge(KeyHash(e.Key), e, true)
}

// merge folds e in; remote says whether it came from a peer (only those count conflicts).
func (s *State) merge(kh Digest, e Entry, remote bool) bool {
	cur, ok := s.regs[kh]
	if ok {
		if remote && isConflict(e, cur.e) {
			s.conflicts++
		}
		if !Wins(e, cur.e) {
			return false
		}
	}
	r := &reg{e: e, eh: EntryHash(e)}
	s.regs[kh] = r
	s.index.put(0, LeafRef{KeyHash: kh, EntryHash: r.eh})
	if s.max.Less(e.Stamp) {
		s.max = e.Stamp
	}
	return true
}

// isConflict reports whether a merge of a into a register holding b is a tag conflict: two live
// values of one tag with different targets, stamped by different nodes. Whichever wins, the other
// target's manifest stays, untagged.
func isConflict(a, b Entry) bool {
	return a.Kind == Tag && !a.Deleted && !b.Deleted && a.Target != b.Target && a.Stamp.Node != b.Stamp.Node
}

// Observe compares v (the local registry now) with the last View observed, and stamps with c each
// change whose new value differs from the register's current live value, so that a change applied
// from a peer (already in the state with its origin's stamp) is never stamped again. It returns
// the entries it created and remembers v as the last View.
//
// Before stamping, c observes the greatest stamp in the state, so a local change always orders
// after every change this replica has merged (a re-push after a delete is a newer add and wins).
func (s *State) Observe(v View, c *Clock) []Entry {
	c.Observe(s.max)
	var out []Entry
	emit := func(k Key, target string, deleted bool) {
		if cur, ok := s.regs[KeyHash(k)]; ok {
			if cur.e.Deleted == deleted && cur.e.Target == target {
				return
			}
		} else if deleted {
			return // nothing to delete: no register ever said it was there
		}
		e := Entry{Key: k, Target: target, Deleted: deleted, Stamp: c.Now()}
		if e.Validate() != nil {
			return // a name no register can hold (empty, too long): not replicated
		}
		s.merge(KeyHash(k), e, false) // a local retag is not a conflict (see Conflicts)
		out = append(out, e)
	}
	repos := slices.Sorted(maps.Keys(v))
	for name := range s.view {
		if _, ok := v[name]; !ok {
			repos = append(repos, name)
		}
	}
	slices.Sort(repos)
	for _, name := range repos {
		now, was := v[name], s.view[name]
		for _, d := range sortedUnion(now.Manifests, was.Manifests) {
			_, in := now.Manifests[d]
			_, old := was.Manifests[d]
			if in != old {
				emit(Key{name, Manifest, d}, "", !in)
			}
		}
		for _, t := range sortedUnion(now.Tags, was.Tags) {
			target, in := now.Tags[t]
			old, had := was.Tags[t]
			if in != had || target != old {
				emit(Key{name, Tag, t}, target, !in)
			}
		}
	}
	s.view = cloneView(v)
	return out
}

func sortedUnion[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// cloneView deep-copies v, dropping repositories that hold nothing.
func cloneView(v View) View {
	out := View{}
	for name, r := range v {
		if len(r.Manifests) == 0 && len(r.Tags) == 0 {
			continue
		}
		c := Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
		maps.Copy(c.Manifests, r.Manifests)
		maps.Copy(c.Tags, r.Tags)
		out[name] = c
	}
	return out
}

// LastView returns a copy of the View that Observe saw last.
func (s *State) LastView() View { return cloneView(s.view) }

// MaxStamp returns the greatest stamp of any register merged or created (persisted with the state,
// so a restarted node's clock can Observe it).
func (s *State) MaxStamp() Stamp { return s.max }

// Live returns what the registry should hold: every register that is not a tombstone. A tag whose
// manifest is deleted is still listed (the applier decides; see docs/peers.md).
func (s *State) Live() View {
	v := View{}
	for _, r := range s.regs {
		if r.e.Deleted {
			continue
		}
		repo, ok := v[r.e.Repo]
		if !ok {
			repo = Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
			v[r.e.Repo] = repo
		}
		if r.e.Kind == Manifest {
			repo.Manifests[r.e.Name] = struct{}{}
		} else {
			repo.Tags[r.e.Name] = r.e.Target
		}
	}
	return v
}

// Len returns the number of registers, tombstones included.
func (s *State) Len() int { return len(s.regs) }

// Root returns the digest of the whole state: equal for equal register sets, whatever the order of
// events that built them. The empty state's root is the zero digest.
func (s *State) Root() Digest { return s.index.hash() }

// Conflicts returns how many tag merges met two different targets written by different nodes:
// each Merge of a live tag value into a register holding a live value of the same tag with another
// target stamped by another node counts once, whether the incoming value wins or loses. A local
// retag (Observe) never counts. The count is per replica and not part of the Root.
func (s *State) Conflicts() uint64 { return s.conflicts }

// PurgeTombstones forgets tombstones stamped before cut (every member has seen them and the grace
// period has passed; the caller decides cut). It returns how many it forgot.
func (s *State) PurgeTombstones(cut Stamp) int {
	return s.drop(func(e Entry) bool { return e.Deleted && e.Stamp.Less(cut) })
}

// Forget drops every register stamped before cut, keeping the last observed View: used by a node
// that was away longer than the grace period, so that its stale adds cannot resurrect what the
// others deleted and purged. Its local changes since cut survive; what the peers no longer have is
// then absent from Live and the applier removes it from the registry. Because the last View is
// kept, Observe does not stamp the registry's unchanged contents as new adds, and a removal of
// something whose register was forgotten stamps no tombstone. cut must be no later than the last
// moment this node was known to be in sync with its peers, or its own unsynced changes are lost.
func (s *State) Forget(cut Stamp) int {
	return s.drop(func(e Entry) bool { return e.Stamp.Less(cut) })
}

func (s *State) drop(f func(Entry) bool) int {
	n := 0
	for kh, r := range s.regs {
		if f(r.e) {
			delete(s.regs, kh)
			s.index.del(0, kh)
			n++
		}
	}
	return n
}

// Summaries answers a peer's request for the nodes at paths (invalid paths are skipped).
func (s *State) Summaries(paths []Path) []Summary {
	out := make([]Summary, 0, len(paths))
	for _, p := range paths {
		if p.Valid() {
			out = append(out, s.index.summary(p))
		}
	}
	return out
}

// Entries returns the registers whose key hashes are listed (those this state has), in the order
// asked.
func (s *State) Entries(keyHashes []Digest) []Entry {
	out := make([]Entry, 0, len(keyHashes))
	for _, kh := range keyHashes {
		if r, ok := s.regs[kh]; ok {
			out = append(out, r.e)
		}
	}
	return out
}

// All returns every register in key-hash order.
func (s *State) All() []Entry {
	refs := s.index.collect(make([]LeafRef, 0, len(s.regs)))
	out := make([]Entry, len(refs))
	for i, r := range refs {
		out[i] = s.regs[r.KeyHash].e
	}
	return out
}
