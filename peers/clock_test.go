package peers

import (
	"math"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/trowfs/trowfs/peers/crdt"
)

// TestFarFutureClockDoesNotPoisonTheNode: one peer whose clock is years ahead (or that sends
// the largest stamp there is) must not drag this node's clock along, neither through the entries it
// offers nor through the clock its node meta gossips. Its entries are refused and counted, and this
// node's own changes keep ordering after everything it admitted.
func TestFarFutureClockDoesNotPoisonTheNode(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	clock := func() time.Time { return now }
	n := authNode(testKey, clock)
	bound := now.Add(crdt.MaxDrift).UnixMilli()

	key := crdt.Key{Repo: "lib/app", Kind: crdt.Tag, Name: "latest"}
	far := crdt.Entry{Key: key, Target: "sha256:ee", Stamp: crdt.Stamp{Wall: now.AddDate(10, 0, 0).UnixMilli(), Node: "evil"}}
	poison := crdt.Entry{Key: crdt.Key{Repo: "lib/app", Kind: crdt.Manifest, Name: "sha256:ee"},
		Stamp: crdt.Stamp{Wall: math.MaxInt64, Logical: math.MaxUint32, Node: "evil"}}
	if err := n.takeOffer("evil", crdt.EncodeEntries([]crdt.Entry{far, poison})); err != nil {
		t.Fatal(err)
	}
	if c := n.rep.Clock(); c.Wall > bound {
		t.Fatalf("an offer from a peer with a broken clock moved this node's clock to %d (bound %d)", c.Wall, bound)
	}
	if n.rep.Len() != 0 {
		t.Fatalf("far-future entries were merged: %d registers", n.rep.Len())
	}

	meta, err := Meta{ClockWall: math.MaxInt64, ClockLogic: math.MaxUint32, DataAddr: "127.0.0.1:1", RegistryURL: "http://x"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	n.upsert(&memberlist.Node{Name: "evil", Meta: meta}, true)
	if c := n.rep.Clock(); c.Wall > bound {
		t.Fatalf("a gossiped clock moved this node's clock to %d (bound %d)", c.Wall, bound)
	}

	// A local push now is stamped within the bound and after what came before it.
	es := n.rep.Observe(crdt.View{"lib/app": {Manifests: map[string]struct{}{"sha256:01": {}}, Tags: map[string]string{"latest": "sha256:01"}}})
	if len(es) != 2 {
		t.Fatalf("Observe stamped %d entries, want 2", len(es))
	}
	for _, e := range es {
		if e.Stamp.Wall < now.UnixMilli() || e.Stamp.Wall > bound {
			t.Fatalf("local change stamped %+v", e.Stamp)
		}
	}
	if st := n.Status(); st.FutureStamps < 2 || st.FutureNode != "evil" {
		t.Fatalf("status does not show the broken clock: future_stamps %d, future_node %q", st.FutureStamps, st.FutureNode)
	}

	// An entry just inside the bound is still taken (a peer a few minutes ahead is normal).
	near := crdt.Entry{Key: crdt.Key{Repo: "lib/app", Kind: crdt.Tag, Name: "v2"}, Target: "sha256:01", Stamp: crdt.Stamp{Wall: now.Add(10 * time.Minute).UnixMilli(), Node: "b"}}
	if err := n.takeOffer("b", crdt.EncodeEntries([]crdt.Entry{near})); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.rep.Live()["lib/app"].Tags["v2"]; !ok {
		t.Fatal("an entry ten minutes ahead was refused")
	}
}
