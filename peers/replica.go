package peers

import (
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// Replica is what the node needs of the replicated state: crdt.State with its clock (NewReplica).
// Not safe for concurrent use: the node locks.
type Replica interface {
	Root() crdt.Digest
	Len() int
	Conflicts() uint64
	// Observe stamps the local registry's changes since the last View and returns them.
	Observe(v crdt.View) []crdt.Entry
	// Merge folds in an entry from a peer (and advances the clock past its stamp). An entry stamped
	// more than crdt.MaxDrift ahead of the wall clock is refused (and counted, see Drift).
	Merge(e crdt.Entry) bool
	Live() crdt.View
	Summaries(paths []crdt.Path) []crdt.Summary
	Entries(keyHashes []crdt.Digest) []crdt.Entry
	NewSync(remoteRoot crdt.Digest) Syncer
	// Clock returns the greatest stamp issued or observed; Now issues a new one.
	Clock() crdt.Stamp
	Now() crdt.Stamp
	// Drift counts the remote stamps refused for being more than crdt.MaxDrift ahead, and the
	// latest of them (crdt.Clock.Drift).
	Drift() (uint64, crdt.Stamp)
	// ObserveClock advances the clock past s (the persisted clock). A peer's gossiped clock goes
	// through AdmitClock first.
	ObserveClock(s crdt.Stamp)
	// AdmitClock reports whether a remote stamp is at most crdt.MaxDrift ahead, counting it if not.
	AdmitClock(s crdt.Stamp) bool
	// PurgeTombstones forgets tombstones stamped before cut; when it forgot any, cut's Wall becomes
	// the horizon (it never goes back): Merge then refuses an entry stamped before the horizon for
	// a key it holds no register of, since that is the stale add of a node that missed the purged
	// delete (a node cut off for longer than the grace period) or a change no member had when
	// they all agreed. Forget clears the horizon: a node that forgot takes back what peers hold.
	PurgeTombstones(cut crdt.Stamp) int
	Forget(cut crdt.Stamp) int
	// Horizon is the purge horizon (Unix ms, 0 for none); SetHorizon restores a persisted one.
	Horizon() int64
	SetHorizon(ms int64)
	// Stale counts the entries Merge refused for being stamped before the horizon.
	Stale() uint64
	MarshalBinary() ([]byte, error)
	UnmarshalBinary(b []byte) error
}

// Syncer is one comparison with one peer (crdt.Sync).
type Syncer interface {
	Next() []crdt.Path
	Receive(remote []crdt.Summary)
	Want() []crdt.Digest
	Offer() []crdt.Entry
}

// NewReplica returns the production replica: an empty crdt.State stamped by node's clock.
func NewReplica(node string, now func() time.Time) Replica {
	return &crdtReplica{s: crdt.New(), c: crdt.NewClock(node, now)}
}

type crdtReplica struct {
	s       *crdt.State
	c       *crdt.Clock
	horizon int64  // see Replica.PurgeTombstones
	stale   uint64 // entries refused for being stamped before horizon
}

func (r *crdtReplica) Root() crdt.Digest                { return r.s.Root() }
func (r *crdtReplica) Len() int                         { return r.s.Len() }
func (r *crdtReplica) Conflicts() uint64                { return r.s.Conflicts() }
func (r *crdtReplica) Observe(v crdt.View) []crdt.Entry { return r.s.Observe(v, r.c) }
func (r *crdtReplica) Merge(e crdt.Entry) bool {
	if !r.c.Admit(e.Stamp) {
		return false // a broken clock: merged, it would drag every later stamp here (and everywhere) along
	}
	if e.Stamp.Wall < r.horizon {
		if _, ok := r.s.Get(e.Key); !ok {
			r.stale++
			return false // its delete may have been purged here: merged, it would come back
		}
	}
	r.c.Observe(e.Stamp)
	return r.s.Merge(e)
}
func (r *crdtReplica) Live() crdt.View                        { return r.s.Live() }
func (r *crdtReplica) Summaries(p []crdt.Path) []crdt.Summary { return r.s.Summaries(p) }
func (r *crdtReplica) Entries(k []crdt.Digest) []crdt.Entry   { return r.s.Entries(k) }
func (r *crdtReplica) NewSync(root crdt.Digest) Syncer        { return crdt.NewSync(r.s, root) }
func (r *crdtReplica) Clock() crdt.Stamp                      { return r.c.Last() }
func (r *crdtReplica) ObserveClock(s crdt.Stamp)              { r.c.Observe(s) }
func (r *crdtReplica) AdmitClock(s crdt.Stamp) bool           { return r.c.Admit(s) }
func (r *crdtReplica) Now() crdt.Stamp                        { return r.c.Now() }
func (r *crdtReplica) Drift() (uint64, crdt.Stamp)            { return r.c.Drift() }
func (r *crdtReplica) PurgeTombstones(cut crdt.Stamp) int {
	k := r.s.PurgeTombstones(cut)
	if k > 0 && cut.Wall > r.horizon {
		r.horizon = cut.Wall
	}
	return k
}
func (r *crdtReplica) Forget(cut crdt.Stamp) int {
	r.horizon = 0
	return r.s.Forget(cut)
}
func (r *crdtReplica) Horizon() int64                 { return r.horizon }
func (r *crdtReplica) SetHorizon(ms int64)            { r.horizon = ms }
func (r *crdtReplica) Stale() uint64                  { return r.stale }
func (r *crdtReplica) MarshalBinary() ([]byte, error) { return r.s.MarshalBinary() }
func (r *crdtReplica) UnmarshalBinary(b []byte) error { return r.s.UnmarshalBinary(b) }
