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
// An empty root gossiped (what every node gossips first) is asked for, not answered with every
// register at every SyncInterval.
func TestStaleGossipedRootIsSettledByTheDataPlane(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stale crdt.Digest
	}{{"an older root", crdt.Digest{0x57, 0xa1, 0xe}}, {"the empty root", crdt.Digest{}}} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := startCluster(t, clusterOpts{names: []string{"a", "b"}})
			a, b := nodes[0], nodes[1]
			b.reg.edit(func(v crdt.View) {
				r := repoOf(v, "library/app")
				r.Manifests[m1], r.Manifests[m2] = struct{}{}, struct{}{}
				r.Tags["v1"] = m1
			})
			b.Notify()
			waitFor(t, 10*time.Second, "converged", func() bool { return converged(nodes) && a.Status().Registers > 0 })
			time.Sleep(time.Second) // the last gossip of b's meta (its clock moves after its root) has arrived
			a.mu.Lock()
			m := a.members["b"]
			m.meta.Root = tc.stale // b gossiped it before; b has our root now
			m.doneValid = false
			syncs := a.syncs
			a.mu.Unlock()
			bytes := dataBytes(nodes)
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
			if moved := dataBytes(nodes) - bytes; moved > 2048 {
				t.Fatalf("%d data-plane bytes to find that b is in sync", moved)
			}
		})
	}
}
