// Package crdt is the replicated registry state that trowfs peers converge on: pure (no I/O, no
// goroutines, no network, no FUSE), deterministic, and safe to test without root.
//
// CONTRACT SKELETON (branch peers-base): the exported names below are the agreed seam between the
// pure core (this package) and the node that gossips, syncs and applies (package peers). Bodies
// marked unimplemented are filled in by the core's owner; the names and meanings stay.
package crdt

import "time"

// Digest is a SHA-256 value: the state root and every Merkle node digest.
type Digest [32]byte

// Stamp is a hybrid logical clock timestamp. Stamps are totally ordered by (Wall, Logical, Node).
type Stamp struct {
	Wall    int64  // Unix milliseconds
	Logical uint32 // breaks ties within one millisecond
	Node    string // the stamping node's stable name; breaks ties between nodes
}

// Less reports whether a orders before b.
func (a Stamp) Less(b Stamp) bool { panic("unimplemented") }

// IsZero reports whether a is the zero stamp (never issued).
func (a Stamp) IsZero() bool { return a.Wall == 0 && a.Logical == 0 && a.Node == "" }

// Clock issues stamps for one node. Not safe for concurrent use; callers lock.
type Clock struct {
	node string
	now  func() time.Time
	last Stamp
}

// NewClock returns a clock for node; now is the wall clock (time.Now in production).
func NewClock(node string, now func() time.Time) *Clock { return &Clock{node: node, now: now} }

// Now returns a stamp greater than every stamp Now returned or Observe saw.
func (c *Clock) Now() Stamp { panic("unimplemented") }

// Observe advances the clock past s (the HLC receive rule).
func (c *Clock) Observe(s Stamp) { panic("unimplemented") }

// Last returns the greatest stamp issued or observed.
func (c *Clock) Last() Stamp { return c.last }

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

// State is one replica: every register (tombstones included), the last View observed from the local
// registry, and a Merkle index over the registers. Not safe for concurrent use; callers lock.
type State struct{}

// New returns an empty state.
func New() *State { panic("unimplemented") }

// Get returns the register for k.
func (s *State) Get(k Key) (Entry, bool) { panic("unimplemented") }

// Merge folds e in (join: the greater stamp wins). It reports whether the state changed.
func (s *State) Merge(e Entry) bool { panic("unimplemented") }

// Observe compares v (the local registry now) with the last View observed, and stamps with c each
// change whose new value differs from the register's current live value, so that a change applied
// from a peer (already in the state with its origin's stamp) is never stamped again. It returns
// the entries it created and remembers v as the last View.
func (s *State) Observe(v View, c *Clock) []Entry { panic("unimplemented") }

// Live returns what the registry should hold: every register that is not a tombstone. A tag whose
// manifest is deleted is still listed (the applier decides; see docs/peers.md).
func (s *State) Live() View { panic("unimplemented") }

// Len returns the number of registers, tombstones included.
func (s *State) Len() int { panic("unimplemented") }

// Root returns the digest of the whole state: equal for equal register sets, whatever the order of
// events that built them.
func (s *State) Root() Digest { panic("unimplemented") }

// Conflicts returns how many tag merges met two different targets written by different nodes.
func (s *State) Conflicts() uint64 { panic("unimplemented") }

// PurgeTombstones forgets tombstones stamped before cut (every member has seen them and the grace
// period has passed; the caller decides cut). It returns how many it forgot.
func (s *State) PurgeTombstones(cut Stamp) int { panic("unimplemented") }

// Forget drops every register stamped before cut, keeping the last observed View: used by a node
// that was away longer than the grace period, so that its stale adds cannot resurrect what the
// others deleted and purged. Its local changes since cut survive; what the peers no longer have is
// then absent from Live and the applier removes it from the registry.
func (s *State) Forget(cut Stamp) int { panic("unimplemented") }

// Path names a node of the Merkle index: a string of hex nibbles of sha256(key encoding); "" is the root.
type Path string

// LeafRef is one register as a leaf of the index: the hash of its key and the hash of its entry.
type LeafRef struct {
	KeyHash   Digest
	EntryHash Digest
}

// Summary describes one index node: its digest and either its 16 children's digests (an inner node)
// or its leaves (a node with at most LeafMax registers).
type Summary struct {
	Path     Path
	Count    int
	Digest   Digest
	Children []Digest // len 16 for an inner node; nil for a leaf node
	Leaves   []LeafRef
}

// LeafMax is the most registers a leaf node holds before it splits into 16 children.
const LeafMax = 16

// Summaries answers a peer's request for the nodes at paths.
func (s *State) Summaries(paths []Path) []Summary { panic("unimplemented") }

// Entries returns the registers whose key hashes are listed (those this state has).
func (s *State) Entries(keyHashes []Digest) []Entry { panic("unimplemented") }

// Sync drives one comparison with one peer, purely: the caller ships the paths it returns to the
// peer, feeds the peer's Summaries back, and finally exchanges entries. It costs O(k log n) in the
// number k of differing registers.
type Sync struct{}

// NewSync starts a comparison of s with a peer whose root is remoteRoot.
func NewSync(s *State, remoteRoot Digest) *Sync { panic("unimplemented") }

// Next returns the paths to ask the peer for next; empty when the descent is done.
func (y *Sync) Next() []Path { panic("unimplemented") }

// Receive takes the peer's answer to the last Next.
func (y *Sync) Receive(remote []Summary) { panic("unimplemented") }

// Want returns the key hashes the peer has and this state lacks or holds differently (fetch them
// with the peer's Entries and Merge them); Offer returns this state's entries the peer lacks or
// holds differently (send them, the peer Merges them).
func (y *Sync) Want() []Digest { panic("unimplemented") }
func (y *Sync) Offer() []Entry { panic("unimplemented") }

// Encode and Decode are the persistent and wire form of a whole state (registers, last View, clock
// and counters), versioned and checksummed; see docs/peers.md.
func (s *State) MarshalBinary() ([]byte, error) { panic("unimplemented") }
func (s *State) UnmarshalBinary(b []byte) error { panic("unimplemented") }

// EncodeEntry and DecodeEntry are the canonical wire form of one register (also what EntryHash hashes).
func EncodeEntry(e Entry) []byte          { panic("unimplemented") }
func DecodeEntry(b []byte) (Entry, error) { panic("unimplemented") }
