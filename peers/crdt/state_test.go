package crdt

import (
	"math"
	"testing"
	"time"
)

func fixedClock(node string, ms *int64) *Clock {
	return NewClock(node, func() time.Time { return time.UnixMilli(*ms) })
}

func TestClockNowIncreasesWhenWallClockGoesBack(t *testing.T) {
	ms := int64(10_000)
	c := fixedClock("a", &ms)
	prev := c.Now()
	for _, w := range []int64{10_000, 9_000, 5, 10_001, 10_001, 20_000, 1} {
		ms = w
		s := c.Now()
		if !prev.Less(s) {
			t.Fatalf("Now %v after %v", s, prev)
		}
		prev = s
	}
}

func TestClockCountsStampsFarInTheFuture(t *testing.T) {
	ms := int64(1_000_000)
	c := fixedClock("a", &ms)
	c.Observe(Stamp{Wall: ms + 1000, Node: "b"})
	if n, _ := c.Drift(); n != 0 {
		t.Fatalf("a near stamp counted: %d", n)
	}
	far := Stamp{Wall: ms + MaxDrift.Milliseconds() + 1, Node: "broken"}
	c.Observe(far)
	c.Observe(far)
	if n, last := c.Drift(); n != 1 || last != far {
		t.Fatalf("Drift = %d, %v", n, last)
	}
	if s := c.Now(); !far.Less(s) {
		t.Fatalf("Now %v not after the adopted stamp %v", s, far)
	}
}

// TestClockSurvivesAPoisonStamp: the largest stamp a peer can send must not make this node's next
// stamp order before the ones it issued already (a Wall one past the largest wraps around to a
// negative one, which orders before everything), and a stamp too far ahead is not admitted at all.
func TestClockSurvivesAPoisonStamp(t *testing.T) {
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

func TestObserveStampsOnlyLocalChanges(t *testing.T) {
	ms := int64(1000)
	a, b := New(), New()
	ca, cb := fixedClock("a", &ms), fixedClock("b", &ms)
	v := View{"r": {Manifests: map[string]struct{}{"sha256:1": {}}, Tags: map[string]string{"latest": "sha256:1"}}}
	if got := a.Observe(v, ca); len(got) != 2 {
		t.Fatalf("Observe created %v", got)
	}
	for _, e := range a.All() {
		b.Merge(e)
	}
	if a.Root() != b.Root() {
		t.Fatal("roots differ after merging everything")
	}
	if got := b.Observe(b.Live(), cb); len(got) != 0 {
		t.Fatalf("applying a peer's state and observing it stamped %v", got)
	}
	ms++
	delete(v["r"].Manifests, "sha256:1")
	got := a.Observe(v, ca)
	if len(got) != 1 || !got[0].Deleted {
		t.Fatalf("delete observed as %v", got)
	}
	if b.Merge(got[0]); len(b.Live()["r"].Manifests) != 0 {
		t.Fatal("delete not merged")
	}
	// b missed nothing now; an older add from a peer that missed the delete loses.
	old := Entry{Key: Key{"r", Manifest, "sha256:1"}, Stamp: Stamp{Wall: 999, Node: "c"}}
	if b.Merge(old) {
		t.Fatal("an older add undid a delete")
	}
}

func TestMarshalRoundTripAndRejectsDamage(t *testing.T) {
	ms := int64(1000)
	a := New()
	c := fixedClock("a", &ms)
	a.Observe(View{"r": {Manifests: map[string]struct{}{"sha256:1": {}, "sha256:2": {}}, Tags: map[string]string{"x": "sha256:2"}}}, c)
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back := New()
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if back.Root() != a.Root() || back.MaxStamp() != a.MaxStamp() || len(back.LastView()) != 1 {
		t.Fatal("round trip changed the state")
	}
	for i := 0; i < len(b); i++ {
		if err := New().UnmarshalBinary(b[:i]); err == nil {
			t.Fatalf("truncation to %d accepted", i)
		}
		for bit := 0; bit < 8; bit++ {
			d := append([]byte(nil), b...)
			d[i] ^= 1 << bit
			if err := New().UnmarshalBinary(d); err == nil {
				t.Fatalf("bit flip at %d.%d accepted", i, bit)
			}
		}
	}
}
