package peers

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// TestSyncOfLargeEntriesFitsTheBodyLimit: registers with long names (a repository name may be up
// to 4096 bytes in the state) make a batch of maxKeys entries larger than maxBody. A sync must
// still converge, in both directions: an entries answer or an offer sent whole would be refused
// by the caller ("larger than") or the receiver (413) at every sync, for ever, so both are split
// to fit the limit.
func TestSyncOfLargeEntriesFitsTheBodyLimit(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	mk := func(name string) *Node {
		n := authNode(testKey, clock)
		n.set = Settings{Name: name, TombstoneGrace: time.Hour}
		n.rep, n.ctx = NewReplica(name, clock), t.Context()
		return n
	}
	a, b := mk("a"), mk("b")
	long := strings.Repeat("x", 2500)
	for i := range maxKeys {
		e := crdt.Entry{Key: crdt.Key{Repo: fmt.Sprintf("%s/%05d", long, i), Kind: crdt.Manifest, Name: "sha256:01"},
			Stamp: crdt.Stamp{Wall: now.UnixMilli(), Node: "b"}}
		if i%2 == 1 {
			a.rep.Merge(e) // a has the odd ones to offer
		} else {
			b.rep.Merge(e) // b the even ones for a to fetch
		}
	}
	srv := httptest.NewServer(b.handler())
	defer srv.Close()
	a.http = srv.Client()
	cl := client{n: a, peer: "b", addr: strings.TrimPrefix(srv.URL, "http://")}
	for round := 1; a.rep.Root() != b.rep.Root(); round++ {
		if round > 4 {
			t.Fatalf("not converged after %d syncs: a %d registers, b %d", round-1, a.rep.Len(), b.rep.Len())
		}
		if err := a.runSync(cl, b.rep.Root()); err != nil {
			t.Fatalf("sync %d: %v", round, err)
		}
	}
}
