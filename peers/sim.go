package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/trowfs/trowfs/peers/crdt"
)

// SimOptions shape a simulated cluster (Simulate).
type SimOptions struct {
	Nodes     int           // default 50
	Changes   int           // pushes and deletes on random nodes, default 2×Nodes
	Partition float64       // probability that a data-plane link is down while the changes happen, default 0.3
	Churn     int           // nodes stopped during the changes and restarted (same name, kept state) after them, default Nodes/10, <0 none
	Seed      uint64        // of the random choices
	Timeout   time.Duration // give up after this long, default 2 min
	Logger    *slog.Logger  // nil: discard
}

// SimResult is what a simulation cost until every node had the same root and said so.
type SimResult struct {
	Nodes, Changes, Churned int
	Registers               int           // in the converged state
	Converged               bool          // false: Timeout passed first
	Elapsed                 time.Duration // from the heal (links up, churned nodes back) to convergence
	RootsEqual              time.Duration // from the heal until every node held the same root (0: never); the rest of Elapsed is gossip telling them
	SyncsAfterHealPerNode   float64       // comparisons started per node from the heal to convergence
	SyncsPerNode            float64       // comparisons started, per node, over the whole run
	DataBytesPerNode        float64       // data-plane bytes (in + out) per node, over the whole run
	GossipBytesPerNode      float64       // gossip bytes sent per node, over the whole run
	// LeavesPerNode is how many members memberlist reported gone per node, over the whole run:
	// without churn, each one is a live member its failure detector declared dead.
	LeavesPerNode float64
}

func (r SimResult) String() string {
	return fmt.Sprintf("%d nodes, %d changes, %d churned: converged=%v in %s after the heal (same roots after %s); per node: %.1f syncs (%.1f after the heal), %.0f data-plane bytes, %.0f gossip bytes, %.1f members seen leave; %d registers",
		r.Nodes, r.Changes, r.Churned, r.Converged, r.Elapsed.Round(time.Millisecond), r.RootsEqual.Round(time.Millisecond), r.SyncsPerNode, r.SyncsAfterHealPerNode,
		r.DataBytesPerNode, r.GossipBytesPerNode, r.LeavesPerNode, r.Registers)
}

// Simulate runs a cluster of in-process nodes with the real node, state and sync code over
// memberlist's MockNetwork, the data plane in memory (the real handlers, no sockets), random
// data-plane partitions and churn while changes are made, then heals and measures until every
// node has the same root and every one says in_sync. For the bench (make bench) and tests.
func Simulate(o SimOptions) (SimResult, error) {
	if o.Nodes <= 0 {
		o.Nodes = 50
	}
	if o.Changes <= 0 {
		o.Changes = 2 * o.Nodes
	}
	if o.Partition == 0 {
		o.Partition = 0.3
	}
	if o.Churn == 0 {
		o.Churn = o.Nodes / 10
	}
	if o.Churn < 0 {
		o.Churn = 0
	}
	if o.Churn >= o.Nodes {
		o.Churn = o.Nodes - 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rnd := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	key := bytes.Repeat([]byte{0x42}, KeySize)
	c := &simCluster{net: &memberlist.MockNetwork{}, plane: &memPlane{handlers: map[string]http.Handler{}, down: map[[2]string]bool{}}, key: key, log: log,
		gone: &goneSet{addrs: map[string]bool{}}, leaves: &atomic.Int64{}}
	defer c.stop()
	churned := rnd.Perm(o.Nodes - 1)[:o.Churn] // node-00, the seed, stays
	// MockNetwork is not safe to extend while it carries traffic: every incarnation's transport
	// (a churned node comes back at a new address, as a moved pod) is made up front.
	c.spare = map[string][]*memberlist.MockTransport{}
	for i := range o.Nodes {
		name := fmt.Sprintf("node-%02d", i)
		c.spare[name] = append(c.spare[name], c.net.NewTransport(name))
	}
	for _, idx := range churned {
		name := fmt.Sprintf("node-%02d", idx+1)
		c.spare[name] = append(c.spare[name], c.net.NewTransport(name))
	}
	for i := range o.Nodes {
		if err := c.start(fmt.Sprintf("node-%02d", i)); err != nil {
			return SimResult{}, err
		}
	}
	if !waitUntil(o.Timeout, func() bool { return c.allSee(o.Nodes) }) {
		return SimResult{}, errors.New("simulation: the nodes did not all join")
	}

	// Changes under partitions and churn.
	names := c.names()
	for i := range names {
		for j := range names {
			if i != j && rnd.Float64() < o.Partition {
				c.plane.setDown(c.nodes[names[i]].dataAdv(), c.nodes[names[j]].dataAdv(), true)
			}
		}
	}
	for k, idx := range churned {
		name := names[idx+1]
		if k%2 == 0 {
			c.halt(name) // half of them before the changes
		}
	}
	var digests int
	for range o.Changes {
		live := c.liveNames()
		sn := c.nodes[live[rnd.IntN(len(live))]]
		repo := fmt.Sprintf("repo%d", rnd.IntN(8))
		sn.reg.edit(func(v crdt.View) {
			r, ok := v[repo]
			if !ok {
				r = crdt.Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
				v[repo] = r
			}
			if len(r.Tags) > 0 && rnd.IntN(4) == 0 { // a delete
				for t := range r.Tags {
					delete(r.Tags, t)
					break
				}
				return
			}
			digests++
			d := fmt.Sprintf("sha256:%064x", digests)
			r.Manifests[d] = struct{}{}
			r.Tags[fmt.Sprintf("t%d", rnd.IntN(4))] = d
		})
		sn.node.Notify()
		time.Sleep(5 * time.Millisecond)
	}
	for k, idx := range churned {
		if k%2 == 1 {
			c.halt(names[idx+1]) // the others after them
		}
	}
	time.Sleep(200 * time.Millisecond)

	// Heal: links up, churned nodes back with their state.
	c.plane.heal()
	for _, idx := range churned {
		if err := c.start(names[idx+1]); err != nil {
			return SimResult{}, err
		}
	}
	start := time.Now()
	res := SimResult{Nodes: o.Nodes, Changes: o.Changes, Churned: len(churned)}
	healSyncs := c.syncs()
	res.Converged = waitUntil(o.Timeout, func() bool {
		if res.RootsEqual == 0 && c.rootsEqual() {
			res.RootsEqual = time.Since(start)
		}
		ok, why := c.converged()
		if time.Since(start) > 5*time.Second {
			log.Info("simulation: not converged yet", "why", why)
		}
		return ok
	})
	res.Elapsed = time.Since(start)
	res.SyncsAfterHealPerNode = float64(c.syncs()-healSyncs) / float64(o.Nodes)
	var syncs uint64
	var data, gossip int64
	for _, sn := range c.nodes {
		st := sn.node.Status()
		syncs += st.Syncs + sn.pastSyncs
		data += st.BytesIn + st.BytesOut + sn.pastBytes
		gossip += sn.gossip.Load()
		res.Registers = st.Registers
	}
	n := float64(o.Nodes)
	res.SyncsPerNode, res.DataBytesPerNode, res.GossipBytesPerNode = float64(syncs)/n, float64(data)/n, float64(gossip)/n
	res.LeavesPerNode = float64(c.leaves.Load()) / n
	return res, nil
}

func waitUntil(d time.Duration, ok func() bool) bool {
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// simCluster is driven from one goroutine (Simulate's); the nodes' own loops only use the plane.
type simCluster struct {
	net   *memberlist.MockNetwork
	plane *memPlane
	key   []byte
	log   *slog.Logger
	nodes map[string]*simNode
	spare map[string][]*memberlist.MockTransport // transports for the incarnations still to start
	gone  *goneSet                               // gossip addresses of stopped incarnations
	// leaves counts memberlist's leave events on every node (leaveCounter)
	leaves *atomic.Int64
	order  []string
	seed   string
}

type simNode struct {
	name      string
	node      *Node
	reg       *simRegistry
	store     *memStore
	gossip    *atomic.Int64
	pastSyncs uint64 // of earlier incarnations (churn)
	pastBytes int64
}

func (s *simNode) dataAdv() string { return "data." + s.name + ":1" }

// simGossip sets memberlist's timings for the simulation: every node is a set of goroutines in
// one process, 50 of them on 2 shared cores, so a probe's ack can wait for a CPU far longer than
// on a LAN. Probe timings are memberlist's LAN defaults (1 s, 500 ms): a 100 ms ack timeout
// declared live members dead whenever the cores were busy (the sync bursts after the heal), each
// false death and refutation added to the gossip queues that carry the roots, and at 50 nodes the
// cluster did not converge in 3 minutes (BENCHMARKS.md, Peers). Gossip and push-pull stay fast:
// they carry the roots, and converging is the roots' gossip reaching every node.
func simGossip(mc *memberlist.Config) {
	mc.ProbeInterval, mc.ProbeTimeout = time.Second, 500*time.Millisecond
	mc.GossipInterval, mc.PushPullInterval, mc.DeadNodeReclaimTime = 50*time.Millisecond, 2*time.Second, time.Millisecond
}

// leaveCounter counts the members that memberlist reports gone (left, or declared dead by its
// failure detector) on a node: without churn every one is a live member declared dead.
type leaveCounter struct {
	memberlist.EventDelegate
	n *atomic.Int64
}

func (l leaveCounter) NotifyLeave(node *memberlist.Node) {
	l.n.Add(1)
	l.EventDelegate.NotifyLeave(node)
}

// halt stops a node (its state stays in its memStore) and takes its data plane off the network.
func (c *simCluster) halt(name string) {
	sn := c.nodes[name]
	st := sn.node.Status()
	sn.pastSyncs += st.Syncs
	sn.pastBytes += st.BytesIn + st.BytesOut
	c.plane.serve(sn.dataAdv(), nil)
	if err := sn.node.Stop(); err != nil {
		c.log.Warn("simulation: stopping a node", "node", name, "err", err)
	}
	c.gone.add(sn.node.GossipAddr())
	sn.node = nil
}

func (c *simCluster) start(name string) error {
	if c.nodes == nil {
		c.nodes = map[string]*simNode{}
	}
	sn := c.nodes[name]
	if sn == nil {
		sn = &simNode{name: name, reg: &simRegistry{v: crdt.View{}}, store: &memStore{}, gossip: &atomic.Int64{}}
		c.nodes[name] = sn
		c.order = append(c.order, name)
	}
	if len(c.spare[name]) == 0 {
		return fmt.Errorf("simulation: no transport left for %s", name)
	}
	tr := c.spare[name][0]
	c.spare[name] = c.spare[name][1:]
	s := Settings{Name: name, BindHost: "127.0.0.1", BindPort: 1, DataAdvertise: sn.dataAdv(), Key: c.key,
		RegistryURL: "http://" + name + ".invalid", RegistryAdvertise: "http://" + name + ".invalid", TombstoneGrace: DefaultTombstoneGrace}
	if c.seed != "" {
		s.Join = []string{c.seed}
	}
	n, err := Start(Options{Settings: s, View: sn.reg, Applier: sn.reg, Store: sn.store, Logger: c.log.With("sim", name),
		Transport: simTransport{countingTransport{tr, sn.gossip}, c.gone}, Listener: idleListener{done: make(chan struct{})},
		HTTP: &http.Client{Transport: c.plane.from(sn.dataAdv())}, SyncInterval: 500 * time.Millisecond, Debounce: 20 * time.Millisecond,
		PersistDebounce: 50 * time.Millisecond, PeerBackoffStart: 100 * time.Millisecond,
		GossipConfig: func(mc *memberlist.Config) {
			simGossip(mc)
			mc.Events = leaveCounter{mc.Events, c.leaves}
		}})
	if err != nil {
		return err
	}
	if sn.node != nil {
		return fmt.Errorf("simulation: %s started twice", name)
	}
	sn.node = n
	c.plane.serve(sn.dataAdv(), n.handler())
	if c.seed == "" {
		c.seed = n.GossipAddr()
	}
	return nil
}

func (c *simCluster) names() []string { return append([]string{}, c.order...) }

func (c *simCluster) liveNames() []string {
	var out []string
	for _, name := range c.order {
		if c.nodes[name].node != nil {
			out = append(out, name)
		}
	}
	return out
}

func (c *simCluster) allSee(k int) bool {
	for _, sn := range c.nodes {
		if sn.node == nil || sn.node.ml.NumMembers() != k {
			return false
		}
	}
	return true
}

// syncs is the comparisons the live incarnations started.
func (c *simCluster) syncs() uint64 {
	var k uint64
	for _, sn := range c.nodes {
		if sn.node != nil {
			k += sn.node.Status().Syncs
		}
	}
	return k
}

// rootsEqual is every node holding the same root (whatever the others know of it).
func (c *simCluster) rootsEqual() bool {
	var root string
	for _, name := range c.order {
		sn := c.nodes[name]
		if sn.node == nil {
			return false
		}
		if r := sn.node.Status().Root; root == "" {
			root = r
		} else if r != root {
			return false
		}
	}
	return true
}

func (c *simCluster) converged() (bool, string) {
	var root string
	for _, name := range c.order {
		sn := c.nodes[name]
		st := sn.node.Status()
		alive := 0
		for _, m := range st.Members {
			if m.State == "alive" {
				alive++
			}
		}
		if !st.InSync || alive != len(c.order)-1 {
			why := fmt.Sprintf("%s (root %.19s): in_sync %v, %d of %d members alive", name, st.Root, st.InSync, alive, len(c.order)-1)
			for _, m := range st.Members {
				if !m.InSync {
					var actual string
					if o := c.nodes[m.Name]; o != nil && o.node != nil {
						actual = o.node.Status().Root
					}
					why += fmt.Sprintf("; %s %s gossiped %.19s, has %.19s, last %v: %s", m.Name, m.State, m.Root, actual, m.LastExchange, m.LastError)
				}
			}
			return false, why
		}
		if root == "" {
			root = st.Root
		} else if st.Root != root {
			return false, name + ": another root"
		}
	}
	return true, ""
}

func (c *simCluster) stop() {
	var wg sync.WaitGroup
	for _, sn := range c.nodes {
		if sn.node != nil {
			wg.Go(func() { _ = sn.node.Stop() })
		}
	}
	wg.Wait()
}

// goneSet holds the gossip addresses of stopped incarnations. MockTransport hands a packet to
// the destination's unbuffered channel and waits for it to be read: a packet to a stopped node
// would block the sender's probe or gossip loop for good (seen as members that stay "left", or
// alive at a dead address, forever on some nodes). Over UDP such a packet is lost and a dial
// fails; countingTransport does the same for these addresses.
type goneSet struct {
	mu    sync.Mutex // guards addrs
	addrs map[string]bool
}

func (g *goneSet) add(addr string) {
	g.mu.Lock()
	g.addrs[addr] = true
	g.mu.Unlock()
}

func (g *goneSet) has(addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addrs[addr]
}

// simTransport drops what is sent to a stopped incarnation (see goneSet).
type simTransport struct {
	countingTransport
	gone *goneSet
}

var errSimGone = errors.New("simulated: nobody listens there any more")

func (t simTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.gone.has(addr) {
		t.sent.Add(int64(len(b)))
		return time.Now(), nil // lost, as a UDP packet to a stopped process
	}
	// A node stopping right now may no longer read its channel: give up after a while (the
	// packet is lost) rather than wedge the sender.
	done := make(chan struct{})
	go func() { _, _ = t.countingTransport.WriteTo(b, addr); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	return time.Now(), nil
}

func (t simTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.gone.has(addr) {
		return nil, errSimGone
	}
	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() { c, err := t.countingTransport.DialTimeout(addr, timeout); ch <- dialed{c, err} }()
	select {
	case d := <-ch:
		return d.c, d.err
	case <-time.After(timeout):
		return nil, errSimGone
	}
}

// countingTransport counts the gossip bytes a node sends (packets and streams).
type countingTransport struct {
	memberlist.Transport
	sent *atomic.Int64
}

func (t countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.sent.Add(int64(len(b)))
	return t.Transport.WriteTo(b, addr)
}

func (t countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := t.Transport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return countingConn{conn, t.sent}, nil
}

type countingConn struct {
	net.Conn
	sent *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(int64(n))
	return n, err
}

// memPlane carries data-plane requests to the nodes' handlers in memory.
type memPlane struct {
	mu       sync.Mutex // guards handlers and down
	handlers map[string]http.Handler
	down     map[[2]string]bool // (from, to) data addresses
}

func (p *memPlane) serve(addr string, h http.Handler) {
	p.mu.Lock()
	p.handlers[addr] = h
	p.mu.Unlock()
}

func (p *memPlane) setDown(from, to string, down bool) {
	p.mu.Lock()
	p.down[[2]string{from, to}] = down
	p.mu.Unlock()
}

func (p *memPlane) heal() {
	p.mu.Lock()
	clear(p.down)
	p.mu.Unlock()
}

func (p *memPlane) from(addr string) http.RoundTripper { return memTrip{p, addr} }

type memTrip struct {
	p    *memPlane
	from string
}

var errSimDown = errors.New("simulated partition")

func (t memTrip) RoundTrip(req *http.Request) (*http.Response, error) {
	t.p.mu.Lock()
	h, down := t.p.handlers[req.URL.Host], t.p.down[[2]string{t.from, req.URL.Host}] // no handler: a stopped node
	t.p.mu.Unlock()
	if req.Body != nil {
		defer req.Body.Close()
	}
	if h == nil || down {
		return nil, errSimDown
	}
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
	}
	sreq := httptest.NewRequestWithContext(req.Context(), req.Method, req.URL.String(), bytes.NewReader(body))
	sreq.Header = req.Header.Clone()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, sreq)
	return rec.Result(), nil
}

// idleListener accepts nothing: the simulated data plane does not use sockets.
type idleListener struct{ done chan struct{} }

func (l idleListener) Accept() (net.Conn, error) { <-l.done; return nil, net.ErrClosed }
func (l idleListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}
func (idleListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// memStore keeps a node's persisted state across its incarnations.
type memStore struct {
	mu sync.Mutex // guards b
	b  []byte
}

func (s *memStore) Load() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		return nil, os.ErrNotExist
	}
	return append([]byte{}, s.b...), nil
}

func (s *memStore) Save(b []byte) error {
	s.mu.Lock()
	s.b = append([]byte{}, b...)
	s.mu.Unlock()
	return nil
}

// simRegistry is a registry that takes every push and delete: its View is what it was last
// given, plus the simulated clients' edits.
type simRegistry struct {
	mu sync.Mutex // guards v
	v  crdt.View
}

func (r *simRegistry) View() (crdt.View, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return copyView(r.v), nil
}

func (r *simRegistry) Apply(_ context.Context, live crdt.View, _ []Source) error {
	r.mu.Lock()
	r.v = copyView(live)
	r.mu.Unlock()
	return nil
}

func (r *simRegistry) edit(f func(v crdt.View)) {
	r.mu.Lock()
	f(r.v)
	r.mu.Unlock()
}

func copyView(v crdt.View) crdt.View {
	out := crdt.View{}
	for name, r := range v {
		c := crdt.Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
		maps.Copy(c.Manifests, r.Manifests)
		maps.Copy(c.Tags, r.Tags)
		out[name] = c
	}
	return out
}
