package peers

import (
	"testing"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// A member whose gossiped root is stale while its state equals ours (the 50-node simulation after
// a burst of changes: every root equal, the gossip of the last ones still on its way) is in sync
// as soon as a comparison finds its root equal to ours, and is not compared again at every
// SyncInterval until its gossip arrives.
func TestStaleGossipedRootIsSettledByTheDataPlane(t *testing.T) {
	nodes := startCluster(t, clusterOpts{names: []string{"a", "b"}})
	a := nodes[0]
	waitFor(t, 10*time.Second, "converged", func() bool { return converged(nodes) })
	a.mu.Lock()
	m := a.members["b"]
	m.meta.Root = crdt.Digest{0x57, 0xa1, 0xe} // a root b gossiped before; b has ours now
	m.doneValid = false
	syncs := a.syncs
	a.mu.Unlock()
	if a.Status().InSync {
		t.Fatal("a stale root counts as in sync")
	}
	poke(a.kick)
	waitFor(t, 5*time.Second, "a in sync with b through one comparison", func() bool { return a.Status().InSync })
	time.Sleep(2500 * time.Millisecond) // two SyncIntervals
	a.mu.Lock()
	extra := a.syncs - syncs
	a.mu.Unlock()
	if extra != 1 {
		t.Fatalf("%d comparisons with a member already in sync, want 1", extra)
	}
}
