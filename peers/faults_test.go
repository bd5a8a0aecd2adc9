package peers

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trowfs/trowfs/peers/crdt"
)

// faults is a data-plane http.RoundTripper that injects what networks and peers do wrong: a
// partition (no route to an address), slowness (a delay before each request), and a lying peer
// (the bytes of its Entries answers flipped).
type faults struct {
	base http.RoundTripper

	mu    sync.Mutex // guards everything below
	down  map[string]bool
	delay map[string]time.Duration
	lie   map[string]string // data address -> the liar's node name
	lies  int
}

func newFaults() *faults {
	return &faults{base: &http.Transport{}, down: map[string]bool{}, delay: map[string]time.Duration{}, lie: map[string]string{}}
}

var errPartitioned = errors.New("injected partition: no route to host")

func (f *faults) RoundTrip(req *http.Request) (*http.Response, error) {
	addr := req.URL.Host
	f.mu.Lock()
	down, delay, lie := f.down[addr], f.delay[addr], f.lie[addr]
	f.mu.Unlock()
	if down {
		return nil, errPartitioned
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		}
	}
	resp, err := f.base.RoundTrip(req)
	if err != nil || lie == "" || req.URL.Path != routeEntries || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(b) > 8 { // an answer with entries: flip a byte inside the last one
		b[len(b)-3] ^= 0x20
		// The liar holds the key: it signs what it says (an outsider's flip fails the MAC).
		resp.Header.Set(HeaderMAC, answerMAC(authKey(testKey), req, lie, b))
		f.mu.Lock()
		f.lies++
		f.mu.Unlock()
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return resp, nil
}

func (f *faults) set(m map[string]bool, addr string, on bool) {
	f.mu.Lock()
	m[addr] = on
	f.mu.Unlock()
}

func (f *faults) told() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lies
}

// faultyCluster starts a, b, c with a faults transport in each node's data-plane client.
func faultyCluster(t *testing.T) ([]*testNode, map[string]*faults) {
	fs := map[string]*faults{}
	nodes := startCluster(t, clusterOpts{names: []string{"a", "b", "c"}, http: func(name string) *http.Client {
		f := newFaults()
		fs[name] = f
		return &http.Client{Transport: f, Timeout: requestTimeout}
	}})
	return nodes, fs
}

func push(n *testNode, repo, tag, digest string) {
	n.reg.edit(func(v crdt.View) {
		r := repoOf(v, repo)
		r.Manifests[digest] = struct{}{}
		r.Tags[tag] = digest
	})
	n.Notify()
}

func memberStatus(n *testNode, name string) MemberStatus {
	for _, m := range n.Status().Members {
		if m.Name == name {
			return m
		}
	}
	return MemberStatus{}
}

func TestLyingPeerIsRejectedAndHonestPeerServes(t *testing.T) {
	nodes, fs := faultyCluster(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	fs["c"].mu.Lock()
	fs["c"].lie[a.dataAdv] = "a"                      // everything a tells c comes with a flipped byte, signed
	fs["c"].delay[b.dataAdv] = 300 * time.Millisecond // and the honest b is slow
	fs["c"].mu.Unlock()
	fs["a"].set(fs["a"].down, c.dataAdv, true) // neither a nor b can reach c: c must pull, and is offered nothing
	fs["b"].set(fs["b"].down, c.dataAdv, true)
	push(a, "library/app", "v1", m1)
	start := time.Now()
	waitFor(t, 15*time.Second, "converged despite the lie", func() bool {
		return converged(nodes) && c.reg.lastLive()["library/app"].Tags["v1"] == m1
	})
	t.Logf("converged in %s", time.Since(start).Round(10*time.Millisecond))
	if fs["c"].told() == 0 {
		t.Fatal("the lying transport never flipped an answer: the test proves nothing")
	}
	st := c.Status()
	if st.Rejected == 0 {
		t.Fatalf("c accepted or ignored a's lies without counting them: %+v", st)
	}
	if ma := memberStatus(c, "a"); !strings.Contains(ma.LastError, "do not match") {
		t.Fatalf("c's view of a does not say it lied: %+v", ma)
	}
	c.mu.Lock()
	backedOff := c.members["a"].backoff
	c.mu.Unlock()
	if backedOff == 0 {
		t.Fatal("c did not back off from the lying a")
	}
	// The lie got nothing accepted: every register c holds is one a's honest tree has.
	a.mu.Lock()
	aRoot := a.rep.Root()
	a.mu.Unlock()
	c.mu.Lock()
	cRoot := c.rep.Root()
	c.mu.Unlock()
	if aRoot != cRoot {
		t.Fatal("c's state differs from a's")
	}
	t.Logf("c rejected %d lying answers from a; took v1 through b", st.Rejected)
}

func TestPartitionHeals(t *testing.T) {
	nodes, fs := faultyCluster(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	cut := func(on bool) {
		fs["b"].set(fs["b"].down, a.dataAdv, on)
		fs["b"].set(fs["b"].down, c.dataAdv, on)
		fs["a"].set(fs["a"].down, b.dataAdv, on)
		fs["c"].set(fs["c"].down, b.dataAdv, on)
	}
	cut(true)
	push(a, "library/app", "v1", m1)
	waitFor(t, 5*time.Second, "c has v1 across the cut", func() bool {
		return c.reg.lastLive()["library/app"].Tags["v1"] == m1
	})
	time.Sleep(2 * time.Second)
	if _, ok := b.reg.lastLive()["library/app"].Tags["v1"]; ok {
		t.Fatal("v1 crossed the partition")
	}
	if st := b.Status(); st.InSync {
		t.Fatalf("b says it is in sync across a partition: %+v", st)
	}
	if ma := memberStatus(b, "a"); !strings.Contains(ma.LastError, "partition") {
		t.Fatalf("b's view of a does not show the failure: %+v", ma)
	}
	cut(false)
	start := time.Now()
	defer func() {
		if t.Failed() {
			dump(t, nodes)
		}
	}()
	waitFor(t, 20*time.Second, "converged after the partition healed", func() bool {
		return converged(nodes) && b.reg.lastLive()["library/app"].Tags["v1"] == m1
	})
	t.Logf("converged %s after the partition healed", time.Since(start).Round(10*time.Millisecond))
	for _, n := range nodes {
		st := n.Status()
		if st.Rejected != 0 {
			t.Errorf("%s: a partition was counted as %d lies", n.set.Name, st.Rejected)
		}
		// Failures back off and a sync is not repeated from the same pair of roots: a handful
		// of syncs, not a loop (a peer that took an offer but had not gossiped its root yet was
		// offered the same entries thousands of times).
		if st.Syncs > 50 {
			t.Errorf("%s: %d syncs for one change and one partition", n.set.Name, st.Syncs)
		}
	}
}

// An answer someone without the key changed on the way (or made up) fails its MAC: rejected as
// a lie, nothing of it used.
func TestForgedAnswerIsRejected(t *testing.T) {
	n := authNode(testKey, time.Now)
	n.set.Name = "c"
	honest := authNode(testKey, time.Now)
	honest.set.Name = "a"
	var flip atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		honest.handler().ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		if flip.Load() {
			b[len(b)-1] ^= 1
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	n.http = srv.Client()
	cl := client{n: n, peer: "a", addr: strings.TrimPrefix(srv.URL, "http://")}
	req := crdt.EncodePaths([]crdt.Path{""})
	if _, err := cl.call(context.Background(), routeSummaries, req); err != nil {
		t.Fatalf("an honest answer: %v", err)
	}
	flip.Store(true)
	if _, err := cl.call(context.Background(), routeSummaries, req); !errors.Is(err, errLying) {
		t.Fatalf("a changed answer: %v, want a rejection", err)
	}
	wrong := client{n: n, peer: "b", addr: cl.addr} // a's answer passed off as b's
	flip.Store(false)
	if _, err := wrong.call(context.Background(), routeSummaries, req); err == nil {
		t.Fatal("another node's answer was taken") // a refuses a request addressed to b (401) before it answers
	}
}
