package crdt

import (
	"math"
	"testing"
	"time"
)

// TestReviewClockSurvivesAPoisonStamp: the largest stamp a peer can send must not make this node's
// next stamp order before the ones it issued already (it used to wrap around to a negative Wall),
// and a stamp too far ahead is not admitted at all.
func TestReviewClockSurvivesAPoisonStamp(t *testing.T) {
	wall := time.UnixMilli(1_700_000_000_000)
	c := NewClock("a", func() time.Time { return wall })
	before := c.Now()
	poison := Stamp{Wall: math.MaxInt64, Logical: math.MaxUint32, Node: "evil"}
	if c.Admit(poison) {
		t.Fatal("Admit accepted a stamp 292 million years ahead")
	}
	if n, last := c.Drift(); n != 1 || last != poison {
		t.Fatalf("Drift = %d, %v after one refused stamp", n, last)
	}
	near := Stamp{Wall: wall.Add(MaxDrift).UnixMilli(), Node: "b"}
	if !c.Admit(near) {
		t.Fatal("Admit refused a stamp exactly MaxDrift ahead")
	}
	// The node's own history (its persisted clock) may still be adopted whatever it holds: Now
	// must keep increasing even then.
	c.Observe(poison)
	if after := c.Now(); !before.Less(after) || after.Wall < poison.Wall {
		t.Fatalf("after the poison stamp Now = %+v: it went back (before it: %+v)", after, before)
	}
}
