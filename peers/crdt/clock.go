package crdt

import (
	"math"
	"time"
)

// MaxDrift is how far ahead of this node's wall clock a remote stamp may be. A stamp further ahead
// comes from a broken (or hostile) clock: Admit refuses it and Clock.Drift counts it, so that one
// bad clock neither drags every node's clock with it nor is hidden. The node's own history (its
// persisted clock) is still adopted by Observe whatever it holds.
const MaxDrift = time.Hour

// Stamp is a hybrid logical clock timestamp. Stamps are totally ordered by (Wall, Logical, Node).
type Stamp struct {
	Wall    int64  // Unix milliseconds
	Logical uint32 // breaks ties within one millisecond
	Node    string // the stamping node's stable name; breaks ties between nodes
}

// Less reports whether a orders before b.
func (a Stamp) Less(b Stamp) bool {
	if a.Wall != b.Wall {
		return a.Wall < b.Wall
	}
	if a.Logical != b.Logical {
		return a.Logical < b.Logical
	}
	return a.Node < b.Node
}

// Compare returns -1, 0 or +1 as a orders before, equal to or after b.
func (a Stamp) Compare(b Stamp) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// IsZero reports whether a is the zero stamp (never issued).
func (a Stamp) IsZero() bool { return a.Wall == 0 && a.Logical == 0 && a.Node == "" }

// Clock issues stamps for one node. Not safe for concurrent use; callers lock.
type Clock struct {
	node string
	now  func() time.Time
	last Stamp

	future     uint64 // remote stamps adopted that were more than MaxDrift ahead of the wall clock
	lastFuture Stamp  // the most recent of them
}

// NewClock returns a clock for node; now is the wall clock (time.Now in production).
func NewClock(node string, now func() time.Time) *Clock { return &Clock{node: node, now: now} }

// Node returns the name the clock stamps with.
func (c *Clock) Node() string { return c.node }

// Now returns a stamp greater than every stamp Now returned or Observe saw. It follows the wall
// clock when the wall clock is ahead of everything seen, and otherwise counts on in Logical, so it
// keeps increasing when the wall clock steps back.
func (c *Clock) Now() Stamp {
	pt := c.now().UnixMilli()
	switch {
	case pt > c.last.Wall:
		c.last = Stamp{Wall: pt, Node: c.node}
	case c.last.Logical == math.MaxUint32 && c.last.Wall == math.MaxInt64:
		c.last.Node = c.node // the end of time: nothing greater exists (and Wall+1 would wrap)
	case c.last.Logical == math.MaxUint32:
		c.last = Stamp{Wall: c.last.Wall + 1, Node: c.node}
	default:
		c.last = Stamp{Wall: c.last.Wall, Logical: c.last.Logical + 1, Node: c.node}
	}
	return c.last
}

// Observe advances the clock past s (the HLC receive rule): every later Now orders after s. A
// stamp more than MaxDrift ahead of the wall clock is adopted too, and counted (see Drift).
func (c *Clock) Observe(s Stamp) {
	if !c.last.Less(s) {
		return
	}
	if s.Wall > c.now().Add(MaxDrift).UnixMilli() {
		c.future++
		c.lastFuture = s
	}
	c.last = s
}

// Admit reports whether a remote stamp may be merged and observed: it is at most MaxDrift ahead of
// the wall clock. A stamp further ahead is counted (see Drift) and must be refused: adopting it
// would move this node's clock, and through its gossip every node's, that far ahead for good.
func (c *Clock) Admit(s Stamp) bool {
	if s.Wall > c.now().Add(MaxDrift).UnixMilli() {
		c.future++
		c.lastFuture = s
		return false
	}
	return true
}

// Last returns the greatest stamp issued or observed.
func (c *Clock) Last() Stamp { return c.last }

// Drift returns how many stamps observed or refused were more than MaxDrift ahead of the wall
// clock, and the latest of them (its Node names the peer whose clock is broken).
func (c *Clock) Drift() (count uint64, last Stamp) { return c.future, c.lastFuture }
