package peers

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// TestLongPartitionResurrectsNoPurgedDelete: c is cut off (not restarted) for longer than the
// grace period while a deletes a manifest and, in sync with every member it can see, purges the
// tombstone. When the partition heals, c still holds the old add. A sync in either direction must
// not bring the manifest back on a: c was never restarted, so it never forgot its stale adds, and
// a has no register left to say the add lost; a refuses adds older than the horizon it purged up
// to instead (persisted, so a restart of a keeps it).
func TestLongPartitionResurrectsNoPurgedDelete(t *testing.T) {
	grace := time.Hour
	t0 := time.UnixMilli(1_700_000_000_000)
	now := t0
	clock := func() time.Time { return now }
	a, c := authNode(testKey, clock), authNode(testKey, clock)
	a.set, c.set = Settings{Name: "a", TombstoneGrace: grace}, Settings{Name: "c", TombstoneGrace: grace}
	a.rep, c.rep = NewReplica("a", clock), NewReplica("c", clock)
	a.ctx, c.ctx = t.Context(), t.Context()

	m := crdt.Key{Repo: "lib/app", Kind: crdt.Manifest, Name: "sha256:01"}
	add := crdt.Entry{Key: m, Stamp: crdt.Stamp{Wall: t0.UnixMilli(), Node: "a"}}
	a.rep.Merge(add)
	c.rep.Merge(add)
	// c is partitioned from here on; a deletes the manifest, then, a grace period later and in
	// sync with the members it sees, purges the tombstone (what purgeLocked does).
	now = t0.Add(time.Second)
	a.rep.Merge(crdt.Entry{Key: m, Deleted: true, Stamp: crdt.Stamp{Wall: now.UnixMilli(), Node: "b"}})
	now = t0.Add(grace + time.Minute)
	a.rep.Now() // a's clock moved on with later events
	a.mu.Lock()
	a.purgeLocked(now)
	a.mu.Unlock()
	if a.purged != 1 || a.rep.Len() != 0 {
		t.Fatalf("a purged %d tombstones, holds %d registers", a.purged, a.rep.Len())
	}

	// a restarts before the partition heals: the horizon it purged up to is persisted with the state.
	st := &memStore{}
	a.opts.Store, a.dirty = st, true
	if err := a.persist(); err != nil {
		t.Fatal(err)
	}
	a2 := authNode(testKey, clock)
	a2.set, a2.rep, a2.ctx, a2.opts.Store = a.set, NewReplica("a", clock), t.Context(), st
	a2.lastFull = now // it was in sync with b just now
	if err := a2.load(); err != nil {
		t.Fatal(err)
	}
	if a2.rep.Horizon() != a.rep.Horizon() || a2.rep.Horizon() == 0 {
		t.Fatalf("horizon after a restart: %d, before %d", a2.rep.Horizon(), a.rep.Horizon())
	}
	a = a2

	// The partition heals: each syncs with the other over the real data plane.
	for _, pair := range [][2]*Node{{c, a}, {a, c}} {
		from, to := pair[0], pair[1]
		srv := httptest.NewServer(to.handler())
		from.http = srv.Client()
		err := from.runSync(client{n: from, peer: to.set.Name, addr: strings.TrimPrefix(srv.URL, "http://")}, to.rep.Root())
		srv.Close()
		if err != nil {
			t.Logf("%s syncing with %s: %v", from.set.Name, to.set.Name, err)
		}
		if _, back := a.rep.Live()[m.Repo].Manifests[m.Name]; back {
			t.Fatalf("after %s synced with %s, the manifest a deleted and purged is live on a again", from.set.Name, to.set.Name)
		}
	}
	if a.Status().Stale == 0 {
		t.Fatal("the refused stale add is not counted")
	}
}
