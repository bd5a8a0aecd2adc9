package peers

import (
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// TestPersistedStateRefusesDamageAndForgetsAfterLongAbsence: a peers.state that is truncated
// anywhere or has a flipped bit gives a clear error (the mount refuses to start and says why; the
// file is left as it is), never a panic or a half-loaded state; and a node whose last full sync is
// older than the grace period forgets what it had before then and applies nothing until it has
// resynced.
func TestPersistedStateRefusesDamageAndForgetsAfterLongAbsence(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	now := t0
	clock := func() time.Time { return now }
	n := authNode(testKey, clock)
	n.set = Settings{Name: "a", TombstoneGrace: time.Hour}
	n.rep = NewReplica("a", clock)
	st := &memStore{}
	n.opts.Store = st
	old := crdt.Entry{Key: crdt.Key{Repo: "lib/app", Kind: crdt.Manifest, Name: "sha256:01"}, Stamp: crdt.Stamp{Wall: t0.UnixMilli(), Node: "b"}}
	n.rep.Merge(old)
	n.lastFull, n.dirty = t0, true
	if err := n.persist(); err != nil {
		t.Fatal(err)
	}
	good := append([]byte{}, st.b...)

	fresh := func() *Node {
		m := authNode(testKey, clock)
		m.set, m.rep, m.opts.Store = n.set, NewReplica("a", clock), st
		return m
	}
	for cut := 0; cut < len(good); cut++ {
		st.b = good[:cut]
		m := fresh()
		if err := m.load(); err == nil || !strings.Contains(err.Error(), "peer state") {
			t.Fatalf("truncated to %d bytes: %v", cut, err)
		}
		if m.rep.Len() != 0 {
			t.Fatalf("truncated to %d bytes: %d registers half-loaded", cut, m.rep.Len())
		}
	}
	for i := range good {
		st.b = append([]byte{}, good...)
		st.b[i] ^= 0x04
		m := fresh()
		err := m.load()
		if err == nil || !strings.Contains(err.Error(), "peer state") {
			t.Fatalf("bit flipped at byte %d of %d: %v", i, len(good), err)
		}
	}

	// Back after twice the grace period: the old register is forgotten, applying waits for a resync.
	st.b = good
	now = t0.Add(2 * time.Hour)
	m := fresh()
	if err := m.load(); err != nil {
		t.Fatal(err)
	}
	if !m.resyncing || m.rep.Len() != 0 {
		t.Fatalf("after 2h away (grace 1h): resyncing %v, %d registers", m.resyncing, m.rep.Len())
	}
	// Within the grace period nothing is forgotten.
	now = t0.Add(30 * time.Minute)
	m = fresh()
	if err := m.load(); err != nil || m.resyncing || m.rep.Len() != 1 {
		t.Fatalf("after 30 min away: %v, resyncing %v, %d registers", err, m.resyncing, m.rep.Len())
	}
}
