package peers

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/trowfs/trowfs/peers/crdt"
)

// ViewSource reads what the local registry holds (package registry's model in production).
type ViewSource interface {
	View() (crdt.View, error)
}

// Source is a peer's registry that content can be fetched from.
type Source struct {
	Name        string
	RegistryURL string
}

// Applier makes the local registry hold live, fetching from sources (package peers/oci).
type Applier interface {
	Apply(ctx context.Context, live crdt.View, sources []Source) error
}

// Options are the node's seams and timings; zero values take the defaults.
type Options struct {
	Settings Settings
	View     ViewSource
	Applier  Applier
	Store    Store   // nil: no persistence
	Replica  Replica // nil: NewReplica(Settings.Name, Now)
	Logger   *slog.Logger
	Now      func() time.Time
	// Transport carries gossip (nil: memberlist's UDP/TCP transport on Settings' bind address).
	Transport memberlist.Transport
	// HTTP carries the data plane (nil: a client with timeouts); tests wrap it to inject faults.
	HTTP *http.Client
	// Listener serves the data plane (nil: listen on Settings.DataBind; in-memory tests pass one).
	Listener net.Listener
	// Intervals.
	ObserveInterval  time.Duration // default 10s
	SyncInterval     time.Duration // default 10s: re-check roots even without gossip
	Debounce         time.Duration // default 200ms: the longest wait between a Notify and its Observe
	MaxSyncs         int           // concurrent syncs, default 4
	GossipConfig     func(*memberlist.Config)
	ApplyMaxBackoff  time.Duration // default 30s
	JoinMaxBackoff   time.Duration // default 30s
	PersistDebounce  time.Duration // default 2s
	PeerBackoffStart time.Duration // default 1s, doubled per failure up to 1 min
}

// Node is one running peer.
type Node struct {
	set     Settings
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	macKey  []byte
	verify  *verifier
	http    *http.Client
	ml      *memberlist.Memberlist
	srv     *http.Server
	lis     net.Listener
	dataAdv string
	gossip  string        // the gossip address, fixed once memberlist runs
	probe   time.Duration // memberlist's probe interval: the pace of the push-pulls after a join

	// metaMu serialises UpdateNode (memberlist does not) and guards published.
	metaMu    sync.Mutex
	published []byte // the node meta gossiped last

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // wakes the sync dispatcher
	obs    chan struct{} // wakes the observer
	apply  chan struct{} // wakes the applier
	save   chan struct{} // wakes the persister
	sem    chan struct{} // bounds concurrent syncs
	pub    chan struct{} // wakes the publisher of node meta (nil: not gossiping)

	// mu guards everything below.
	mu          sync.Mutex
	rep         Replica
	members     map[string]*member
	rejected    uint64
	authFail    uint64
	syncs       uint64
	bytesIn     map[string]int64
	bytesOut    map[string]int64
	waitingFor  string
	lastFull    time.Time // every live member's root equalled ours
	resyncing   bool      // Forget ran: no apply until a sync with every live member
	appliedRoot crdt.Digest
	applied     bool
	dirty       bool
	purged      int
	observeCost time.Duration // what the observe loop's last observe took (observeWait)
}

type member struct {
	name, addr   string
	meta         Meta
	metaErr      string
	alive        bool
	syncing      bool
	lastExchange time.Time
	// done is the pair of roots (ours, theirs) the last successful sync started from: the same
	// pair again is not retried before SyncInterval (a peer that has not gossiped its new root
	// yet would otherwise be offered the same entries in a loop).
	done      [2]crdt.Digest
	doneValid bool
	lastErr   string
	backoff   time.Duration
	notBefore time.Time
	lied      bool // the last failure was a rejected answer: its backoff stands whatever it gossips
	// refusedClock is the gossiped clock (Wall) last refused for being too far ahead.
	refusedClock int64
}

// Start loads the persisted state, serves the data plane, joins the cluster and starts the loops.
func Start(opts Options) (*Node, error) {
	s := opts.Settings
	n := &Node{set: s, opts: opts, log: opts.Logger, now: opts.Now, members: map[string]*member{},
		bytesIn: map[string]int64{}, bytesOut: map[string]int64{},
		kick: make(chan struct{}, 1), obs: make(chan struct{}, 1), apply: make(chan struct{}, 1), save: make(chan struct{}, 1)}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With("component", "peers", "node", s.Name)
	if n.now == nil {
		n.now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&n.opts.ObserveInterval, 10*time.Second)
	def(&n.opts.SyncInterval, 10*time.Second)
	def(&n.opts.Debounce, 200*time.Millisecond)
	def(&n.opts.ApplyMaxBackoff, 30*time.Second)
	def(&n.opts.JoinMaxBackoff, 30*time.Second)
	def(&n.opts.PersistDebounce, 2*time.Second)
	def(&n.opts.PeerBackoffStart, time.Second)
	if n.opts.MaxSyncs <= 0 {
		n.opts.MaxSyncs = 4
	}
	n.sem = make(chan struct{}, n.opts.MaxSyncs)
	key := s.Key
	if key == nil {
		// Loopback without a key: the data plane still authenticates, with a per-name key that only
		// stops accidents, not attackers (none can reach a loopback address from outside).
		key = make([]byte, KeySize)
	}
	n.macKey = authKey(key)
	n.verify = newVerifier(n.macKey, n.now)
	n.http = opts.HTTP
	if n.http == nil {
		n.http = &http.Client{Timeout: requestTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: requestTimeout}}
	}
	n.rep = opts.Replica
	if n.rep == nil {
		n.rep = NewReplica(s.Name, n.now)
	}
	if err := n.load(); err != nil {
		return nil, err
	}

	var err error
	n.lis = opts.Listener
	if n.lis == nil {
		if n.lis, err = net.Listen("tcp", s.DataBind); err != nil {
			return nil, fmt.Errorf("peer data plane: %w", err)
		}
	}
	n.dataAdv = s.DataAdvertise
	if n.dataAdv == "" {
		n.dataAdv = n.lis.Addr().String()
	}
	n.srv = &http.Server{Handler: n.handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: requestTimeout, WriteTimeout: requestTimeout, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 8 << 10,
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = n.srv.Serve(n.lis) }()

	mc := memberlist.DefaultLANConfig()
	mc.Name = s.Name
	mc.BindAddr, mc.BindPort = s.BindHost, s.BindPort
	if s.AdvertiseHost != "" {
		mc.AdvertiseAddr, mc.AdvertisePort = s.AdvertiseHost, s.AdvertisePort
	}
	mc.SecretKey = s.Key
	mc.DeadNodeReclaimTime = 30 * time.Second // a pod that comes back under its name with a new IP is accepted
	mc.Delegate = delegate{n}
	mc.Events = events{n}
	mc.Logger = log.New(slogWriter{n.log}, "", 0)
	mc.Transport = opts.Transport
	if opts.GossipConfig != nil {
		opts.GossipConfig(mc)
	}
	if n.ml, err = memberlist.Create(mc); err != nil {
		_ = n.srv.Close()
		return nil, fmt.Errorf("peer gossip on %s: %w", net.JoinHostPort(s.BindHost, strconv.Itoa(s.BindPort)), err)
	}
	n.probe = mc.ProbeInterval
	n.gossip = n.ml.LocalNode().Address() // read once: memberlist rewrites its local node under its own lock
	if h, p, err := net.SplitHostPort(n.dataAdv); err == nil {
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			// A data plane on 0.0.0.0 or [::] is reached at the address gossip advertises.
			gh, _, _ := net.SplitHostPort(n.gossip)
			n.mu.Lock()
			n.dataAdv = net.JoinHostPort(gh, p)
			n.mu.Unlock()
			n.publishNow() // before any join: no member ever sees the unspecified address
		}
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.pub = make(chan struct{}, 1)
	for _, f := range []func(){n.joinLoop, n.observeLoop, n.syncLoop, n.applyLoop, n.persistLoop, n.publishLoop} {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); f() }()
	}
	n.log.Info("peers started", "gossip", n.gossip, "data_plane", n.dataAdv, "registry", s.RegistryURL, "advertise", s.RegistryAdvertise, "seeds", s.Join)
	return n, nil
}

// GossipAddr is where this node's gossip listens (host:port).
func (n *Node) GossipAddr() string { return n.gossip }

// Notify tells the node that the registry model changed (debounced into one Observe).
func (n *Node) Notify() { poke(n.obs) }

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Stop leaves the cluster, stops the loops and writes the state a last time.
func (n *Node) Stop() error {
	if err := n.ml.Leave(5 * time.Second); err != nil {
		n.log.Warn("leaving the cluster", "err", err)
	}
	n.cancel()
	n.wg.Wait()
	_ = n.ml.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = n.srv.Shutdown(ctx)
	cancel()
	return n.persist()
}

// sleep waits d or until the node stops; false when it stopped.
func (n *Node) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-n.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func backoff(d, max time.Duration) time.Duration {
	if d *= 2; d > max {
		d = max
	}
	return d
}

// joinLoop joins the seeds, retrying with backoff until one answers (seeds may not be up yet).
func (n *Node) joinLoop() {
	defer n.rejoinLoop() // once joined: keep the seeds members (rejoin.go)
	if len(n.set.Join) == 0 {
		return
	}
	wait := 500 * time.Millisecond
	for {
		addrs, rerr := ResolveSeeds(n.ctx, net.DefaultResolver, n.set.Join)
		var self = n.GossipAddr()
		var others []string
		for _, a := range addrs {
			if a != self {
				others = append(others, a)
			}
		}
		joined := 0
		var err error
		if len(others) > 0 {
			joined, err = n.ml.Join(others)
		}
		if joined > 0 {
			n.log.Info("joined the cluster", "via", joined, "members", n.ml.NumMembers())
			n.setWaiting("")
			n.refuteStale()
			return
		}
		if n.ml.NumMembers() > 1 {
			n.setWaiting("") // someone joined us
			return
		}
		why := fmt.Sprintf("resolve: %v; join: %v", rerr, err)
		if rerr == nil && len(others) == 0 {
			why = "only this node; waiting for another to join it"
		}
		n.setWaiting(fmt.Sprintf("seeds %v (%s)", n.set.Join, why))
		n.log.Debug("no seed answered yet; retrying", "in", wait, "resolve_err", rerr, "join_err", err)
		if !n.sleep(wait) {
			return
		}
		wait = backoff(wait, n.opts.JoinMaxBackoff)
	}
}

// refuteStale exchanges full state with a few random members at 1, 2 and 4 probe intervals after
// a join. A node that restarts under its name (a pod, a churned node) starts at a low
// incarnation while the others still hold its "left" record at a higher one; a push-pull with
// any of them carries that record back, and memberlist refutes it at once with a higher
// incarnation. Without this only the node's own periodic push-pull (30 s, scaled up above 32
// members) ever tells it: the others never gossip to a member they think has left, and a stale
// "left" record pushed between two of them marks it left again. Measured in the 50-node
// simulation: restarted members stayed "left" on some nodes 20 s and more after the data had
// converged.
func (n *Node) refuteStale() {
	for _, k := range []time.Duration{1, 2, 4} {
		if !n.sleep(k * n.probe) {
			return
		}
		// The node's own member table: memberlist's Members() hands out nodes it mutates unlocked.
		var addrs []string
		n.mu.Lock()
		for name, m := range n.members {
			if m.alive && name != n.set.Name && m.addr != "" {
				addrs = append(addrs, m.addr)
			}
		}
		n.mu.Unlock()
		rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
		if len(addrs) > 4 {
			addrs = addrs[:4]
		}
		if len(addrs) > 0 {
			_, _ = n.ml.Join(addrs) // a Join is a push-pull with each; a failure changes nothing
		}
	}
}

func (n *Node) setWaiting(s string) {
	n.mu.Lock()
	n.waitingFor = s
	n.mu.Unlock()
}

// observeLoop stamps local registry changes, on notification (debounced) and at an interval.
//
// The debounce is as long as observing costs, not a fixed delay: observeWait times the last
// observe, at most Debounce. A registry of a few images is observed 20 ms after a push (a fixed
// 200 ms was most of the 0.12 s the replication bench measured before A stamped a push); a large
// one, whose View costs more, still spends at most a fifth of the time observing in a burst.
func (n *Node) observeLoop() {
	tick := time.NewTicker(n.opts.ObserveInterval)
	defer tick.Stop()
	n.observeTimed()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		case <-n.obs:
			if !n.sleep(n.observeWait()) {
				return
			}
			select { // fold the notifications that came while debouncing
			case <-n.obs:
			default:
			}
		}
		n.observeTimed()
	}
}

// minDebounce is the shortest wait between a Notify and its Observe: a registry writes one push's
// files (the manifest, its revision link, the tag link) within a few milliseconds, and they are
// stamped together.
const minDebounce = 20 * time.Millisecond

// observeWait is how long a notification waits before its Observe: four times what the last
// Observe took, at least minDebounce, at most Debounce.
func (n *Node) observeWait() time.Duration {
	n.mu.Lock()
	c := n.observeCost
	n.mu.Unlock()
	return min(max(4*c, minDebounce), n.opts.Debounce)
}

// observeTimed is observe, recording how long it took for observeWait.
func (n *Node) observeTimed() {
	t0 := time.Now()
	n.observe()
	d := time.Since(t0)
	n.mu.Lock()
	n.observeCost = d
	n.mu.Unlock()
}

func (n *Node) observe() {
	if n.opts.View == nil {
		return
	}
	v, err := n.opts.View.View()
	if err != nil {
		n.log.Debug("registry view not available", "err", err)
		return
	}
	n.mu.Lock()
	es := n.rep.Observe(v)
	root := n.rep.Root()
	if len(es) > 0 {
		n.changedLocked()
	}
	n.mu.Unlock()
	if len(es) > 0 {
		n.log.Debug("local registry changes stamped", "entries", len(es), "root", root.String())
		n.gossipRoot()
	}
}

// changedLocked records that the state changed: persist, apply, re-check peers.
func (n *Node) changedLocked() {
	n.dirty = true
	poke(n.save)
	poke(n.apply)
	poke(n.kick)
}

// gossipRoot publishes the current root and re-checks the peers.
func (n *Node) gossipRoot() {
	n.publish()
	poke(n.kick)
}

// publish asks the publisher to gossip the node meta if it changed; it never blocks (UpdateNode
// waits for the broadcast to go out, seconds in a busy cluster).
func (n *Node) publish() {
	if n.pub != nil {
		poke(n.pub)
	}
}

func (n *Node) publishLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.pub:
			n.publishNow()
		}
	}
}

// publishNow gossips the node meta when it changed. UpdateNode calls are serialised: memberlist's
// own state update races with itself otherwise.
func (n *Node) publishNow() {
	n.metaMu.Lock()
	if m := n.meta(); !bytes.Equal(m, n.published) {
		if err := n.ml.UpdateNode(5 * time.Second); err != nil {
			n.log.Debug("gossiping the new root", "err", err)
		} else {
			n.published = m
		}
	}
	n.metaMu.Unlock()
}

// syncLoop starts a sync with every live member whose root differs from ours, one per peer.
func (n *Node) syncLoop() {
	tick := time.NewTicker(n.opts.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		case <-n.kick:
		}
		n.dispatch()
	}
}

func (n *Node) dispatch() {
	n.publish() // whatever changed the state (an offer, a merge) is gossiped before comparing
	n.mu.Lock()
	root := n.rep.Root()
	now := n.now()
	var todo []*member
	allEqual, live := true, 0
	for _, m := range n.members {
		if !m.alive || m.metaErr != "" {
			continue
		}
		live++
		if m.meta.Root == root {
			continue
		}
		allEqual = false
		if m.syncing || now.Before(m.notBefore) {
			continue
		}
		if m.doneValid && m.done == [2]crdt.Digest{root, m.meta.Root} && now.Sub(m.lastExchange) < n.opts.SyncInterval {
			continue // compared from these very roots already: wait for its gossip
		}
		m.syncing = true
		todo = append(todo, m)
	}
	if allEqual && live > 0 { // alone, a node is in sync with nobody: no purge, no fresh last_full_sync
		n.lastFull = now
		if n.resyncing && live > 0 {
			n.resyncing = false
			poke(n.apply)
		}
		n.purgeLocked(now)
	}
	n.mu.Unlock()
	for _, m := range todo {
		select {
		case n.sem <- struct{}{}:
		case <-n.ctx.Done():
			return
		}
		n.wg.Add(1)
		go func(m *member) {
			defer n.wg.Done()
			defer func() { <-n.sem }()
			n.syncWith(m)
		}(m)
	}
}

// purgeLocked forgets tombstones every member has had for longer than the grace period: all live
// roots equal ours now, so every register stamped before our clock is on every live member.
func (n *Node) purgeLocked(now time.Time) {
	cut := n.rep.Clock()
	if limit := now.Add(-n.set.TombstoneGrace).UnixMilli(); cut.Wall > limit {
		cut = crdt.Stamp{Wall: limit}
	}
	if cut.Wall <= 0 {
		return
	}
	if k := n.rep.PurgeTombstones(cut); k > 0 {
		n.purged += k
		n.dirty = true
		poke(n.save)
		n.log.Info("purged tombstones every member has had past the grace period", "count", k)
	}
}

// errLying is a peer answering with entries its own tree does not commit to.
var errLying = errors.New("peer sent entries that do not match its tree")

// errMoved is a peer whose state changed during the sync (its answers describe two trees): not a
// lie; nothing of the mismatching batch is merged and the next sync starts afresh.
var errMoved = errors.New("peer's state changed during the sync")

func (n *Node) syncWith(m *member) {
	n.mu.Lock()
	remote, name, addr := m.meta.Root, m.name, m.meta.DataAddr
	local := n.rep.Root()
	n.mu.Unlock()
	n.log.Debug("sync start", "peer", name, "root", local.String(), "peer_root", remote.String())
	var seen crdt.Digest // its root as its first answer gave it
	err := n.runSyncSeen(client{n: n, peer: name, addr: addr}, remote, &seen)
	n.log.Debug("sync end", "peer", name, "err", err)
	n.mu.Lock()
	m.syncing = false
	m.lastExchange = n.now()
	n.syncs++
	wait := time.Duration(0)
	if errors.Is(err, errMoved) {
		err = nil
		defer poke(n.kick) // compare again with what it has now
	}
	if err != nil {
		if errors.Is(err, errLying) {
			n.rejected++
		}
		if m.backoff == 0 {
			m.backoff = n.opts.PeerBackoffStart
		} else {
			m.backoff = backoff(m.backoff, time.Minute)
		}
		m.notBefore = n.now().Add(m.backoff)
		m.lastErr = err.Error()
		m.lied = errors.Is(err, errLying)
		wait = m.backoff
		m.doneValid = false
	} else {
		m.backoff, m.lastErr, m.lied = 0, "", false
		m.done, m.doneValid = [2]crdt.Digest{local, remote}, true
		if seen == local && m.meta.Root == remote {
			// It answered with our very root: it is in sync whatever its gossip says yet. After a
			// burst of changes the gossip of 50 roots took 20 s to settle while every root was
			// already equal, and each stale root cost a sync every SyncInterval (BENCHMARKS.md,
			// Peers). A newer gossip of its root (a higher incarnation) replaces this one.
			m.meta.Root = seen
		}
	}
	n.mu.Unlock()
	if err != nil {
		n.log.Warn("sync failed; backing off", "peer", name, "err", err, "backoff", wait)
	}
	n.gossipRoot()
}

// peerRoot asks the peer for its root.
func (n *Node) peerRoot(c client) (crdt.Digest, error) {
	b, err := c.call(n.ctx, routeSummaries, crdt.EncodePaths([]crdt.Path{""}))
	if err != nil {
		return crdt.Digest{}, err
	}
	ss, err := crdt.DecodeSummaries(b, 1)
	if err != nil || len(ss) != 1 {
		return crdt.Digest{}, fmt.Errorf("%w: summaries: %v", errLying, err)
	}
	return ss[0].Digest, nil
}

// runSync is one comparison: descend the index level by level in batches, fetch what we lack,
// check it against the peer's own leaves, merge it, and offer what the peer lacks.
func (n *Node) runSync(c client, remote crdt.Digest) error {
	var seen crdt.Digest
	return n.runSyncSeen(c, remote, &seen)
}

// runSyncSeen is runSync that also sets *rootSeen to the peer's root as its first answer gave it
// (zero if it gave none).
func (n *Node) runSyncSeen(c client, remote crdt.Digest, rootSeen *crdt.Digest) error {
	var seen crdt.Digest // the peer's root as its first answer gave it
	defer func() { *rootSeen = seen }()
	if remote.IsZero() {
		// An empty root gossiped is often a stale one (a node gossips its empty state first): ask
		// for the root before offering everything. Offering everything at every SyncInterval to
		// members whose new roots had not reached us yet was most of the simulation's data plane.
		r, err := n.peerRoot(c)
		if err != nil {
			return err
		}
		seen, remote = r, r
	}
	n.mu.Lock()
	y := n.rep.NewSync(remote)
	paths := y.Next()
	n.mu.Unlock()
	expect := map[crdt.Digest]bool{} // entry hashes the peer's summaries committed to
	for len(paths) > 0 {
		var got []crdt.Summary
		for i := 0; i < len(paths); i += maxPaths {
			batch := paths[i:min(i+maxPaths, len(paths))]
			b, err := c.call(n.ctx, routeSummaries, crdt.EncodePaths(batch))
			if err != nil {
				return err
			}
			ss, err := crdt.DecodeSummaries(b, len(batch)) // never more than asked
			if err != nil {
				return fmt.Errorf("%w: summaries: %v", errLying, err)
			}
			got = append(got, ss...)
		}
		for _, s := range got {
			if s.Path == "" {
				seen = s.Digest
			}
			for _, l := range s.Leaves {
				expect[l.EntryHash] = true
			}
		}
		n.mu.Lock()
		y.Receive(got)
		paths = y.Next()
		n.mu.Unlock()
	}
	n.mu.Lock()
	want, offer := y.Want(), y.Offer()
	n.mu.Unlock()
	// An answer holds as many of the asked entries as fit in maxBody (a prefix, in the order
	// asked): what it left out is asked again, as long as each answer brings something.
	for len(want) > 0 {
		asked := want[:min(maxKeys, len(want))]
		b, err := c.call(n.ctx, routeEntries, crdt.EncodeDigests(asked))
		if err != nil {
			return err
		}
		es, err := crdt.DecodeEntries(b, len(asked))
		if err != nil {
			return fmt.Errorf("%w: entries: %v", errLying, err)
		}
		// Check every entry before merging any: a peer that lies gets nothing accepted.
		for _, e := range es {
			if !expect[crdt.EntryHash(e)] {
				return n.mismatch(c, seen)
			}
		}
		n.mu.Lock()
		changed := false
		for _, e := range es {
			changed = n.rep.Merge(e) || changed
		}
		if changed {
			n.changedLocked()
		}
		n.mu.Unlock()
		if len(es) == 0 {
			break // it holds none of them any more: the next sync starts afresh
		}
		got := make(map[crdt.Digest]bool, len(es))
		for _, e := range es {
			got[crdt.KeyHash(e.Key)] = true
		}
		rest := make([]crdt.Digest, 0, len(want)-len(es))
		for _, k := range want {
			if !got[k] {
				rest = append(rest, k)
			}
		}
		if len(rest) == len(want) {
			break
		}
		want = rest
	}
	if len(offer) > 0 {
		n.log.Debug("offering entries", "peer", c.peer, "entries", len(offer))
	}
	for len(offer) > 0 {
		k := fitEntries(offer, maxKeys)
		if _, err := c.call(n.ctx, routeOffer, crdt.EncodeEntries(offer[:k])); err != nil {
			return err
		}
		offer = offer[k:]
	}
	return nil
}

// fitEntries returns how many of es, at most max and at least one, encode within maxBody.
func fitEntries(es []crdt.Entry, max int) int {
	size := 1 + binary.MaxVarintLen64 // version and count
	for i, e := range es {
		l := len(crdt.EncodeEntry(e))
		if size += binary.MaxVarintLen64 + l; i == max || (size > maxBody && i > 0) {
			return i
		}
	}
	return len(es)
}

// mismatch tells a peer that lies from one that moved on: asked again, a peer whose root is still
// the one its summaries described sent an entry that tree does not hold.
func (n *Node) mismatch(c client, seen crdt.Digest) error {
	b, err := c.call(n.ctx, routeSummaries, crdt.EncodePaths([]crdt.Path{""}))
	if err != nil {
		return err
	}
	ss, err := crdt.DecodeSummaries(b, 1)
	if err != nil || len(ss) != 1 {
		return fmt.Errorf("%w: summaries: %v", errLying, err)
	}
	if ss[0].Digest != seen {
		return errMoved
	}
	return fmt.Errorf("%w: an entry hashes to nothing its summaries listed", errLying)
}

// applyLoop hands Live to the Applier whenever the state changed, retrying with backoff while the
// local registry is not there.
func (n *Node) applyLoop() {
	wait := time.Second
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.apply:
		}
		if n.opts.Applier == nil {
			continue
		}
		for {
			// Stamp what was pushed locally since the last Observe first: a Live without it would
			// tell the Applier to remove it.
			n.observe()
			n.mu.Lock()
			root := n.rep.Root()
			if n.resyncing || (n.applied && root == n.appliedRoot) {
				n.mu.Unlock()
				break
			}
			live := n.rep.Live()
			var srcs []Source
			for _, m := range n.members {
				if m.alive && m.metaErr == "" {
					srcs = append(srcs, Source{Name: m.name, RegistryURL: m.meta.RegistryURL})
				}
			}
			n.mu.Unlock()
			sort.Slice(srcs, func(i, j int) bool { return srcs[i].Name < srcs[j].Name })
			n.log.Debug("apply start", "root", root.String())
			t0 := time.Now()
			err := n.opts.Applier.Apply(n.ctx, live, srcs)
			n.log.Debug("apply end", "root", root.String(), "took", time.Since(t0), "err", err)
			if err == nil {
				n.mu.Lock()
				n.applied, n.appliedRoot = true, root
				if n.waitingFor != "" && len(n.waitingFor) > 8 && n.waitingFor[:8] == "registry" {
					n.waitingFor = ""
				}
				n.mu.Unlock()
				wait = time.Second
				poke(n.obs) // what was pushed shows up in the registry model
				continue
			}
			n.setWaiting(fmt.Sprintf("registry %s: %v", n.set.RegistryURL, err))
			n.log.Warn("applying the peers' state to the local registry failed; retrying", "registry", n.set.RegistryURL, "err", err, "in", wait)
			if !n.sleep(wait) {
				return
			}
			wait = backoff(wait, n.opts.ApplyMaxBackoff)
		}
	}
}

func (n *Node) persistLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.save:
		}
		if !n.sleep(n.opts.PersistDebounce) {
			return
		}
		if err := n.persist(); err != nil {
			n.log.Warn("writing the peer state failed; retrying at the next change", "err", err)
		}
	}
}

func (n *Node) countBytes(peer string, in, out int64) {
	n.mu.Lock()
	n.bytesIn[peer] += in
	n.bytesOut[peer] += out
	n.mu.Unlock()
}

func (n *Node) countAuthFailure() {
	n.mu.Lock()
	n.authFail++
	n.mu.Unlock()
}

// member table, kept from memberlist's events.
func (n *Node) upsert(node *memberlist.Node, alive bool) {
	if node.Name == n.set.Name {
		return
	}
	n.mu.Lock()
	m := n.members[node.Name]
	if m == nil {
		m = &member{name: node.Name}
		n.members[node.Name] = m
	}
	m.addr, m.alive = node.Address(), alive
	if alive {
		meta, err := DecodeMeta(node.Meta)
		if err != nil {
			m.metaErr = err.Error()
		} else {
			if meta.Root != m.meta.Root {
				n.log.Debug("member root gossiped", "peer", node.Name, "peer_root", meta.Root.String())
			}
			if meta.Root != m.meta.Root && !m.lied {
				m.notBefore = time.Time{} // it changed: a link that failed may work again (a healed partition)
			}
			m.meta, m.metaErr = meta, ""
			// A clock too far ahead is not adopted (it would drag ours, and through our gossip
			// everyone's, along); it is counted once, not at every gossip of the same clock.
			switch s := (crdt.Stamp{Wall: meta.ClockWall, Logical: meta.ClockLogic, Node: node.Name}); {
			case meta.ClockWall == m.refusedClock:
			case n.rep.AdmitClock(s):
				n.rep.ObserveClock(s)
			default:
				m.refusedClock = meta.ClockWall
			}
		}
	}
	n.mu.Unlock()
	poke(n.kick)
}

type events struct{ n *Node }

func (e events) NotifyJoin(node *memberlist.Node)   { e.n.upsert(node, true) }
func (e events) NotifyUpdate(node *memberlist.Node) { e.n.upsert(node, true) }
func (e events) NotifyLeave(node *memberlist.Node)  { e.n.upsert(node, false) }

type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte {
	b := d.n.meta()
	if b == nil || len(b) > limit {
		d.n.log.Error("node meta does not fit", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

// meta is this node's gossiped facts, encoded (nil if they do not encode, which Validate prevents).
func (n *Node) meta() []byte {
	n.mu.Lock()
	c := n.rep.Clock()
	m := Meta{Root: n.rep.Root(), ClockWall: c.Wall, ClockLogic: c.Logical, DataAddr: n.dataAdv, RegistryURL: n.set.RegistryAdvertise}
	n.mu.Unlock()
	b, err := m.Encode()
	if err != nil {
		n.log.Error("node meta", "err", err)
		return nil
	}
	return b
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// slogWriter sends memberlist's log lines to slog at debug level.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("memberlist", "msg", string(trimNL(p)))
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
