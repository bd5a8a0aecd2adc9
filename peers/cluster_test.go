package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/trowfs/trowfs/peers/crdt"
)

// registry is a test node's registry: the fake ViewSource and the Applier that "pushes" Live into it.
type registry struct {
	mu      sync.Mutex // guards everything below
	v       crdt.View
	applied int
	last    crdt.View
	stale   bool // a registry that refuses deletes: what Live drops stays in its View
}

func (r *registry) View() (crdt.View, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return cloneView(r.v), nil
}

func (r *registry) Apply(_ context.Context, live crdt.View, _ []Source) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied++
	r.last = cloneView(live)
	if !r.stale {
		r.v = cloneView(live)
		return nil
	}
	for name, repo := range live {
		cur, ok := r.v[name]
		if !ok {
			cur = crdt.Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
			r.v[name] = cur
		}
		maps.Copy(cur.Manifests, repo.Manifests)
		maps.Copy(cur.Tags, repo.Tags)
	}
	return nil
}

// edit changes the registry's content as a push or delete through the registry would.
func (r *registry) edit(f func(v crdt.View)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.v)
}

// lastLive is the Live the Applier was handed last.
func (r *registry) lastLive() crdt.View {
	r.mu.Lock()
	defer r.mu.Unlock()
	return cloneView(r.last)
}

func cloneView(v crdt.View) crdt.View {
	out := crdt.View{}
	for name, r := range v {
		c := crdt.Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
		maps.Copy(c.Manifests, r.Manifests)
		maps.Copy(c.Tags, r.Tags)
		out[name] = c
	}
	return out
}

func repoOf(v crdt.View, name string) crdt.Repo {
	r, ok := v[name]
	if !ok {
		r = crdt.Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
		v[name] = r
	}
	return r
}

var testKey = bytes.Repeat([]byte{0x5a}, KeySize)

// testNode is one in-process node of a test cluster.
type testNode struct {
	*Node
	reg    *registry
	gossip *atomic.Int64
}

type clusterOpts struct {
	names []string
	http  func(name string) *http.Client // nil: the node's default client
	// gossip tweaks memberlist (nil: the LAN defaults, so that idle figures are real ones).
	gossip func(*memberlist.Config)
	// sync and debounce replace the nodes' SyncInterval (1 s) and Debounce (50 ms) when not zero.
	sync, debounce time.Duration
}

// startCluster starts nodes on 127.0.0.1 with random ports, the real memberlist transport (counted),
// the real data plane and the real crdt; every node after the first joins the first.
func startCluster(t *testing.T, co clusterOpts) []*testNode {
	t.Helper()
	key := testKey
	dir := t.TempDir()
	var nodes []*testNode
	var seed string
	for _, name := range co.names {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: log.New(io.Discard, "", 0)})
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sent := &atomic.Int64{}
		reg := &registry{v: crdt.View{}}
		s := Settings{Name: name, BindHost: "127.0.0.1", BindPort: nt.GetAutoBindPort(), Key: key,
			RegistryURL: "http://" + name + ".invalid", RegistryAdvertise: "http://" + name + ".invalid", TombstoneGrace: DefaultTombstoneGrace}
		if seed != "" {
			s.Join = []string{seed}
		}
		o := Options{Settings: s, View: reg, Applier: reg, Store: FileStore{Path: filepath.Join(dir, name, "state")},
			Transport: countingTransport{nt, sent}, Listener: lis, SyncInterval: time.Second, Debounce: 50 * time.Millisecond,
			PersistDebounce: 100 * time.Millisecond, PeerBackoffStart: 200 * time.Millisecond, GossipConfig: co.gossip}
		if testing.Verbose() && os.Getenv("PEERS_DEBUG") != "" {
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		} else {
			o.Logger = slog.New(slog.DiscardHandler)
		}
		if co.http != nil {
			o.HTTP = co.http(name)
		}
		if co.sync > 0 {
			o.SyncInterval = co.sync
		}
		if co.debounce > 0 {
			o.Debounce = co.debounce
		}
		n, err := Start(o)
		if err != nil {
			t.Fatal(err)
		}
		tn := &testNode{Node: n, reg: reg, gossip: sent}
		t.Cleanup(func() {
			if err := tn.Stop(); err != nil {
				t.Errorf("stopping %s: %v", name, err)
			}
		})
		nodes = append(nodes, tn)
		if seed == "" {
			seed = n.GossipAddr()
		}
	}
	waitFor(t, 10*time.Second, "every node sees every other", func() bool {
		for _, n := range nodes {
			if n.ml.NumMembers() != len(nodes) {
				return false
			}
		}
		return true
	})
	return nodes
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("after %s: not yet: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// converged: every node's root is the same, every node says in_sync, and the last Live each
// Applier got is the state's Live.
func dump(t *testing.T, nodes []*testNode) {
	for _, n := range nodes {
		b, _ := json.Marshal(n.Status())
		t.Logf("%s", b)
	}
}

func converged(nodes []*testNode) bool {
	var root string
	for i, n := range nodes {
		st := n.Status()
		if !st.InSync || len(st.Members) != len(nodes)-1 {
			return false
		}
		if i == 0 {
			root = st.Root
		} else if st.Root != root {
			return false
		}
	}
	return true
}

func dataBytes(nodes []*testNode) (total int64) {
	for _, n := range nodes {
		st := n.Status()
		total += st.BytesIn + st.BytesOut
	}
	return total
}

const (
	m1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	m2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	m3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

func TestThreeNodesConverge(t *testing.T) {
	nodes := startCluster(t, clusterOpts{names: []string{"a", "b", "c"}})
	a, b, c := nodes[0], nodes[1], nodes[2]
	a.reg.stale = true // A's registry keeps what it had: its stale view must not resurrect a delete

	// A tag pushed on A reaches B's and C's Applier as Live.
	start := time.Now()
	a.reg.edit(func(v crdt.View) {
		r := repoOf(v, "library/app")
		r.Manifests[m1] = struct{}{}
		r.Tags["v1"] = m1
	})
	a.Notify()
	waitFor(t, 5*time.Second, "v1 in B's and C's Live", func() bool {
		for _, n := range []*testNode{b, c} {
			if n.reg.lastLive()["library/app"].Tags["v1"] != m1 {
				return false
			}
		}
		return true
	})
	t.Logf("a push on A reached B and C in %s", time.Since(start).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "converged after the push", func() bool { return converged(nodes) })

	// A delete on B sticks everywhere, although A's registry still lists the tag.
	b.reg.edit(func(v crdt.View) { delete(v["library/app"].Tags, "v1") })
	b.Notify()
	waitFor(t, 5*time.Second, "v1 deleted in every Live", func() bool {
		for _, n := range nodes {
			n.mu.Lock()
			_, has := n.rep.Live()["library/app"].Tags["v1"]
			n.mu.Unlock()
			if has {
				return false
			}
		}
		return true
	})
	if _, ok := a.reg.lastLive()["library/app"].Tags["v1"]; ok {
		t.Fatal("A's Applier was not handed the delete")
	}
	if _, ok := a.reg.View(); ok != nil {
		t.Fatal(ok)
	}
	for range 3 { // A observes its stale registry again and again: nothing is restamped
		a.Notify()
		time.Sleep(150 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "converged after the delete", func() bool { return converged(nodes) })
	for _, n := range nodes {
		n.mu.Lock()
		_, has := n.rep.Live()["library/app"].Tags["v1"]
		n.mu.Unlock()
		if has {
			t.Fatalf("%s: the deleted tag came back", n.set.Name)
		}
	}

	// Concurrent writes of one tag on A and C end with one winner everywhere; both manifests stay.
	for _, n := range []*testNode{a, c} {
		target := m2
		if n == c {
			target = m3
		}
		n.reg.edit(func(v crdt.View) {
			r := repoOf(v, "library/app")
			r.Manifests[target] = struct{}{}
			r.Tags["latest"] = target
		})
	}
	a.observe() // both stamp before either hears of the other (a sync takes milliseconds)
	c.observe()
	waitFor(t, 5*time.Second, "converged after concurrent tag writes", func() bool {
		if !converged(nodes) {
			return false
		}
		var want string
		for i, n := range nodes {
			got := n.reg.lastLive()["library/app"].Tags["latest"]
			if i == 0 {
				want = got
			}
			if got == "" || got != want {
				return false
			}
		}
		return true
	})
	var conflicts uint64
	for _, n := range nodes {
		live := n.reg.lastLive()["library/app"]
		if _, ok := live.Manifests[m2]; !ok {
			t.Errorf("%s: the manifest %s is gone", n.set.Name, m2)
		}
		if _, ok := live.Manifests[m3]; !ok {
			t.Errorf("%s: the manifest %s is gone", n.set.Name, m3)
		}
		conflicts += n.Status().Conflicts
		if r := n.Status().Rejected; r != 0 {
			t.Errorf("%s: %d honest answers rejected as lies", n.set.Name, r)
		}
	}
	if conflicts == 0 {
		t.Error("the concurrent tag writes were not counted as a conflict anywhere")
	}
	t.Logf("latest -> %s everywhere; conflicts counted %d", nodes[0].reg.lastLive()["library/app"].Tags["latest"], conflicts)

	// Idle: after convergence, no data-plane bytes move; gossip goes on.
	time.Sleep(2 * time.Second) // let the last syncs' answers and gossip settle
	if !converged(nodes) {
		t.Fatal("not converged before the idle period")
	}
	idle := 30 * time.Second
	if testing.Short() {
		idle = 5 * time.Second
	}
	before := dataBytes(nodes)
	var g0 []int64
	for _, n := range nodes {
		g0 = append(g0, n.gossip.Load())
	}
	syncs0 := uint64(0)
	for _, n := range nodes {
		syncs0 += n.Status().Syncs
	}
	time.Sleep(idle)
	if after := dataBytes(nodes); after != before {
		t.Errorf("idle for %s: data-plane bytes moved from %d to %d", idle, before, after)
	}
	syncs1 := uint64(0)
	for _, n := range nodes {
		syncs1 += n.Status().Syncs
	}
	if syncs1 != syncs0 {
		t.Errorf("idle for %s: %d syncs ran", idle, syncs1-syncs0)
	}
	for i, n := range nodes {
		perMin := float64(n.gossip.Load()-g0[i]) / idle.Minutes()
		t.Logf("idle gossip sent by %s: %.0f bytes/minute (memberlist LAN defaults, 3 nodes, encrypted)", n.set.Name, perMin)
	}
}

func TestLoneNodeKeepsTombstonesAndClaimsNoSync(t *testing.T) {
	n := authNode(bytes.Repeat([]byte{7}, 32), time.Now)
	n.rep = NewReplica("a", time.Now)
	n.set.TombstoneGrace = time.Minute
	n.now = time.Now
	old := crdt.Entry{Key: crdt.Key{Repo: "r", Kind: crdt.Tag, Name: "v1"}, Deleted: true, Stamp: crdt.Stamp{Wall: time.Now().Add(-time.Hour).UnixMilli(), Node: "b"}}
	if !n.rep.Merge(old) {
		t.Fatal("the tombstone was not merged")
	}
	n.members["b"] = &member{name: "b", alive: false} // b left: nobody live to be in sync with
	n.dispatch()
	if n.rep.Len() != 1 || n.purged != 0 {
		t.Fatalf("a node with no live member purged %d tombstones", n.purged)
	}
	if !n.lastFull.IsZero() {
		t.Fatalf("a node with no live member recorded a full sync at %s", n.lastFull)
	}
}

// A data plane bound to every address is advertised at the gossip address, not as 0.0.0.0
// (which a peer would dial as itself).
func TestDataPlaneOnAnyAddressAdvertisesGossipHost(t *testing.T) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := Start(Options{Settings: Settings{Name: "a", BindHost: "127.0.0.1", BindPort: nt.GetAutoBindPort(), Key: testKey, RegistryURL: "http://r", RegistryAdvertise: "http://r", TombstoneGrace: time.Hour},
		Transport: nt, Listener: lis, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	m, err := DecodeMeta(n.ml.LocalNode().Meta)
	if err != nil {
		t.Fatal(err)
	}
	if h, _, _ := net.SplitHostPort(m.DataAddr); h != "127.0.0.1" {
		t.Fatalf("gossiped data-plane address %q, want the gossip host 127.0.0.1", m.DataAddr)
	}
}

// TestStopLeavesNoGoroutines: a node that synced over the real data plane and memberlist
// leaves no goroutine (and so no connection) behind once Stop returns, give or take a moment for
// closed sockets' goroutines to notice.
func TestStopLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("cluster", func(t *testing.T) {
		nodes := startCluster(t, clusterOpts{names: []string{"a", "b"}})
		push(nodes[0], "lib/app", "v1", m1)
		waitFor(t, 30*time.Second, "converged", func() bool { return converged(nodes) })
	}) // its cleanups Stop both nodes
	end := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(end) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines before the cluster, %d after both nodes stopped:\n%s", before, runtime.NumGoroutine(), b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
