package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/api"
	"github.com/trowfs/trowfs/hashtree"
	"github.com/trowfs/trowfs/internal/tracker"
	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/oci"
	"github.com/trowfs/trowfs/registry"
)

// On-mismatch policies (--on-mismatch): what an open for reading of a blob whose content is
// known not to match its name gets.
const (
	OnMismatchServe = "serve" // the bytes, as they are (the default)
	OnMismatchEIO   = "eio"   // EIO until the blob is healed (ZFS's behaviour)
)

// Healer fetches a verified copy of a damaged blob file from peers and renames it over the file
// in DATA (oci.Applier.Heal). It returns the name of the peer the copy came from.
type Healer interface {
	Heal(ctx context.Context, req oci.HealRequest, sources []peers.Source) (string, error)
}

// Heal queue tunables.
const (
	healQueueMax      = 4096             // paths waiting at most; more are dropped (and queued again when seen again)
	healWorkers       = 2                // heals running at once (never two of one path)
	healBackoffStart  = 2 * time.Second  // after a failed heal, doubled per failure
	healBackoffMax    = 10 * time.Minute // the longest wait between two heals of one path
	healWatchInterval = 2 * time.Second  // how often the members and their roots are compared with the last look
)

// healItem is one blob file waiting to be healed.
type healItem struct {
	rel       string
	want      digest.Digest
	attempts  int // failed heals so far
	notBefore time.Time
	running   bool
	lastErr   string
}

// healQueue holds the blob files to heal: at most max paths, each once, each healed by one
// worker at a time, with a doubling back-off after each failure that retryAll lifts (new peers,
// new roots). It never blocks its callers beyond its own short critical sections.
type healQueue struct {
	now              func() time.Time
	max              int
	backoff, maxWait time.Duration
	wake             chan struct{} // capacity 1: something became due

	// mu guards the fields below.
	mu      sync.Mutex
	items   map[string]*healItem
	dropped uint64 // adds refused because the queue was full
	// overflowed: an add was refused since the last refill; the refused paths are still bad and
	// are queued again from the bad-blob set once the queue has room (wantsRefill).
	overflowed bool
}

func newHealQueue(now func() time.Time, max int, backoff, maxWait time.Duration) *healQueue {
	return &healQueue{now: now, max: max, backoff: backoff, maxWait: maxWait, wake: make(chan struct{}, 1),
		items: map[string]*healItem{}}
}

func (q *healQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// add queues rel to be healed to want. A path already queued keeps its place and back-off
// (unless the digest it must have changed); false when the queue is full (counted as dropped).
func (q *healQueue) add(rel string, want digest.Digest) bool { return q.put(rel, want, true) }

// put is add; count says a refused path is a new drop (a refill re-offers paths dropped before).
func (q *healQueue) put(rel string, want digest.Digest, count bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it, ok := q.items[rel]; ok {
		if it.want != want {
			it.want, it.attempts, it.notBefore, it.lastErr = want, 0, time.Time{}, ""
			q.poke()
		}
		return true
	}
	if len(q.items) >= q.max {
		if count {
			q.dropped++
		}
		q.overflowed = true
		return false
	}
	q.items[rel] = &healItem{rel: rel, want: want}
	q.poke()
	return true
}

// remove forgets rel, and with under every path below it (a removed directory): it is gone, or
// its content is no longer known to be bad. A heal of it already running finishes; its result
// is dropped.
func (q *healQueue) remove(rel string, under bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.items, rel)
	if q.overflowed {
		q.poke() // room for a refill
	}
	if !under {
		return
	}
	for p := range q.items {
		if strings.HasPrefix(p, rel+"/") {
			delete(q.items, p)
		}
	}
}

// next returns a copy of a due item that is not running and marks it running; or, when none is
// due, how long until the earliest one is (0: nothing queued).
func (q *healQueue) next() (healItem, bool, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	var best *healItem
	var wait time.Duration
	for _, it := range q.items {
		if it.running {
			continue
		}
		if !it.notBefore.After(now) {
			// Due: the one with the fewest failures first, then by path (a stable order).
			if best == nil || it.attempts < best.attempts || (it.attempts == best.attempts && it.rel < best.rel) {
				best = it
			}
			continue
		}
		if d := it.notBefore.Sub(now); wait == 0 || d < wait {
			wait = d
		}
	}
	if best == nil {
		return healItem{}, false, wait
	}
	best.running = true
	return *best, true, 0
}

// done records the end of a heal of it. Success (err nil) or a path no longer queued forgets
// it; a failure backs it off.
func (q *healQueue) done(it healItem, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	cur, ok := q.items[it.rel]
	if !ok || cur.want != it.want {
		if ok {
			cur.running = false // re-added meanwhile with another digest: heal that one
			q.poke()
		}
		return
	}
	if err == nil {
		delete(q.items, it.rel)
		return
	}
	cur.running = false
	cur.attempts++
	cur.lastErr = err.Error()
	wait := q.backoff
	for i := 1; i < cur.attempts && wait < q.maxWait; i++ {
		wait *= 2
	}
	cur.notBefore = q.now().Add(min(wait, q.maxWait))
}

// wantsRefill reports, once, that adds were refused and the queue has come down to half its
// bound: time to queue again the bad blobs that did not fit (a refill costs a walk of the bad
// set, so it waits for room for many of them).
func (q *healQueue) wantsRefill() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.overflowed || len(q.items) > q.max/2 {
		return false
	}
	q.overflowed = false
	return true
}

// retryAll makes every waiting item due now (new peers joined, or a peer's content changed).
func (q *healQueue) retryAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items {
		it.notBefore = time.Time{}
	}
	q.poke()
}

// len is the number of paths queued (running included) and of adds refused so far.
func (q *healQueue) stats() (queued int, dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items), q.dropped
}

// badBlobs is the set of blob paths whose tree entry is a mismatch, kept from the tracker's
// events; --on-mismatch=eio refuses opens of them and the healer is fed from it.
type badBlobs struct {
	n atomic.Int64 // len(paths), read without the lock on every open
	// mu guards paths.
	mu    sync.RWMutex
	paths map[string]digest.Digest // path → the digest its name promises
}

func (b *badBlobs) set(rel string, want digest.Digest) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.paths == nil {
		b.paths = map[string]digest.Digest{}
	}
	b.paths[rel] = want
	b.n.Store(int64(len(b.paths)))
}

// clear forgets rel, and with under the paths below it (a removed directory).
func (b *badBlobs) clear(rel string, under bool) {
	if b.n.Load() == 0 || (!under && !b.has(rel)) {
		return // the common case: every event of every good file passes here
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.paths, rel)
	if under {
		for p := range b.paths {
			if strings.HasPrefix(p, rel+"/") {
				delete(b.paths, p)
			}
		}
	}
	b.n.Store(int64(len(b.paths)))
}

func (b *badBlobs) has(rel string) bool {
	if b.n.Load() == 0 {
		return false
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	_, ok := b.paths[rel]
	return ok
}

// healing is the server's side of healing: the bad-blob set, the queue and its counters.
type healing struct {
	bad    badBlobs
	q      *healQueue  // made before the mount; fed only while on
	on     atomic.Bool // heal workers run
	healer Healer      // set before on; nil: nothing is healed (peers off, or an Applier that cannot heal)
	// healed and failed count heal attempts by result (trowfs_peer_heals_total).
	healed, failed atomic.Uint64
	cancel         context.CancelFunc
	wg             sync.WaitGroup
}

// observeBlob keeps the bad-blob set and the heal queue in step with one tree event.
func (s *Server) observeBlob(ev tracker.Event) {
	h := &s.heal
	if ev.Removed || ev.Entry.Kind != hashtree.KindFile || ev.Entry.Status != hashtree.StatusMismatch {
		h.bad.clear(ev.Path, ev.Removed)
		if h.on.Load() {
			h.q.remove(ev.Path, ev.Removed)
		}
		return
	}
	want, ok := s.Layout().BlobDigest(ev.Path)
	if !ok {
		return
	}
	h.bad.set(ev.Path, want)
	s.queueHeal(ev.Path, want)
}

func (s *Server) queueHeal(rel string, want digest.Digest) {
	if s.heal.on.Load() && !s.heal.q.add(rel, want) {
		s.log.Warn("heal queue full; the blob is queued again when it is next found bad", "path", rel, "max", healQueueMax)
	}
}

// seedBadBlobs adds the mismatched blob files of a listing of the tree to the bad-blob set (at
// start, after the load, and when a layout is detected: no event lists those files then).
func (s *Server) seedBadBlobs(files []registry.FileInfo) {
	l := s.Layout()
	for _, f := range files {
		if f.Status != hashtree.StatusMismatch {
			continue
		}
		if want, ok := l.BlobDigest(f.Path); ok {
			s.heal.bad.set(f.Path, want)
			s.queueHeal(f.Path, want)
		}
	}
}

// refuse is fs.Options.Refuse under --on-mismatch=eio.
func (s *Server) refuse(rel string) bool { return s.heal.bad.has(rel) }

// startHealing starts the heal workers once the peer node runs; healer nil: nothing to do.
func (s *Server) startHealing(healer Healer) {
	if healer == nil {
		s.log.Info("peers: the applier cannot heal blobs; a blob that does not match its name stays as it is")
		return
	}
	h := &s.heal
	h.healer = healer
	h.on.Store(true)
	// What was already bad before the node ran (an event since may have queued it already).
	h.bad.mu.RLock()
	for p, want := range h.bad.paths {
		h.q.add(p, want)
	}
	h.bad.mu.RUnlock()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	for i := 0; i < healWorkers; i++ {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			s.healWorker(ctx)
		}()
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		s.watchPeersForHeals(ctx)
	}()
}

// stopHealing stops the workers (a heal in flight is cancelled; its temporary file is removed).
func (s *Server) stopHealing() {
	if s.heal.cancel != nil {
		s.heal.cancel()
		s.heal.wg.Wait()
	}
}

func (s *Server) healWorker(ctx context.Context) { s.heal.work(ctx, s.healOne) }

// work runs the queue's items through heal, queueing again from the bad-blob set what the
// queue had to refuse once it has room.
func (h *healing) work(ctx context.Context, heal func(context.Context, healItem) error) {
	h.q.work(ctx, heal, h.refill)
}

// refill queues the bad blobs that are not queued, until the queue is full again.
func (h *healing) refill() {
	h.bad.mu.RLock()
	defer h.bad.mu.RUnlock()
	for p, want := range h.bad.paths {
		if !h.q.put(p, want, false) {
			return
		}
	}
}

// work runs heal on due items until ctx ends, waiting for the earliest back-off to pass or for
// add, done or retryAll to make something due. refill (nil: none) is called when the queue
// refused adds and has room again.
func (q *healQueue) work(ctx context.Context, heal func(context.Context, healItem) error, refill func()) {
	for {
		if refill != nil && q.wantsRefill() {
			refill()
		}
		it, ok, wait := q.next()
		if !ok {
			var timer *time.Timer
			var fired <-chan time.Time
			if wait > 0 {
				timer = time.NewTimer(wait)
				fired = timer.C
			}
			select {
			case <-ctx.Done():
			case <-q.wake:
			case <-fired:
			}
			if timer != nil {
				timer.Stop()
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		q.poke() // another worker may take the next due item
		err := heal(ctx, it)
		if ctx.Err() != nil {
			return
		}
		q.done(it, err)
	}
}

// healOne heals one blob file: sources from the live members, repositories from the registry
// model, the copy through the Healer, then the tracker rehashes it and the kernel forgets its
// cached view of it.
func (s *Server) healOne(ctx context.Context, it healItem) error {
	if !s.heal.bad.has(it.rel) {
		return nil // healed or replaced meanwhile: done
	}
	srcs := s.healSources()
	if len(srcs) == 0 {
		err := errors.New("no live peer to fetch the blob from")
		s.log.Info("peers: cannot heal a blob yet", "path", it.rel, "digest", it.want, "err", err)
		s.heal.failed.Add(1)
		return err
	}
	repos, manifest := s.reposReferencing(it.want)
	if len(repos) == 0 {
		s.heal.failed.Add(1)
		return fmt.Errorf("no repository references %s", it.want)
	}
	from, err := s.heal.healer.Heal(ctx, oci.HealRequest{DataDir: s.cfg.Data, RelPath: it.rel, Digest: it.want, Size: -1,
		Repos: repos, Manifest: manifest}, srcs)
	if errors.Is(err, oci.ErrChangedMeanwhile) {
		// The registry deleted or rewrote the file: its own event settles the path (removed, or
		// rehashed and queued again if still bad). Not a failure of the peers.
		s.log.Info("peers: the blob changed during its heal; left as the registry made it", "path", it.rel, "digest", it.want)
		return err
	}
	if err != nil {
		if ctx.Err() == nil {
			s.heal.failed.Add(1)
			s.log.Warn("peers: healing a blob failed; retrying later", "path", it.rel, "digest", it.want, "err", err)
		}
		return err
	}
	s.heal.healed.Add(1)
	if err := s.t.Healed(it.rel, from, it.want); err != nil {
		// Replaced or removed right after the rename: its own operation tells the tracker.
		s.log.Warn("peers: the healed blob changed before the tree took it", "path", it.rel, "err", err)
	}
	if s.fuse != nil {
		s.fuse.Invalidate(it.rel)
	}
	return nil
}

// healSources lists the live members' registries, members in sync with this node first (they
// hold what this node holds), then by name.
func (s *Server) healSources() []peers.Source {
	st := s.peerStatus()
	if st == nil {
		return nil
	}
	ms := append([]peers.MemberStatus{}, st.Members...)
	sort.SliceStable(ms, func(i, j int) bool {
		if ms[i].InSync != ms[j].InSync {
			return ms[i].InSync
		}
		return ms[i].Name < ms[j].Name
	})
	var out []peers.Source
	for _, m := range ms {
		if m.State == "alive" && m.Registry != "" {
			out = append(out, peers.Source{Name: m.Name, RegistryURL: m.Registry})
		}
	}
	return out
}

// maxHealRepos bounds the repositories a heal tries the blob through.
const maxHealRepos = 8

// reposReferencing lists repositories that hold d, as a manifest or as a blob their manifests
// reference (a blob is fetched through a repository: the OCI API has no repository-less blob
// GET), and whether d is a manifest there.
func (s *Server) reposReferencing(d digest.Digest) (repos []string, manifest bool) {
	reg := s.reg.Load()
	has := func(sorted []string) bool {
		i := sort.SearchStrings(sorted, d.String())
		return i < len(sorted) && sorted[i] == d.String()
	}
	for _, repo := range reg.Repos() {
		rr, ok := reg.RepoReport(repo)
		if !ok {
			continue
		}
		m := has(rr.Manifests)
		if !m && !has(rr.Blobs) {
			continue
		}
		if len(repos) == 0 {
			manifest = m
		} else if m != manifest {
			continue // one endpoint per heal: the repositories where it is what the first said
		}
		repos = append(repos, repo)
		if len(repos) == maxHealRepos {
			break
		}
	}
	return repos, manifest
}

// watchPeersForHeals retries every waiting heal at once when the set of live members, or a
// member's root, changes: a peer that joined, came back or received new content may have the blob.
func (s *Server) watchPeersForHeals(ctx context.Context) {
	tick := time.NewTicker(healWatchInterval)
	defer tick.Stop()
	s.heal.q.watch(ctx, tick.C, s.membersFingerprint)
}

// watch calls fingerprint at every tick and retries every waiting item when it changed.
func (q *healQueue) watch(ctx context.Context, tick <-chan time.Time, fingerprint func() string) {
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		if fp := fingerprint(); fp != last {
			q.retryAll()
			last = fp
		}
	}
}

// membersFingerprint names the live members with their registries and roots.
func (s *Server) membersFingerprint() string {
	var b strings.Builder
	for _, src := range s.healSources() {
		b.WriteString(src.Name + "\x00" + src.RegistryURL + "\x00")
	}
	if st := s.peerStatus(); st != nil {
		for _, m := range st.Members {
			if m.State == "alive" {
				b.WriteString(m.Name + "=" + m.Root + "\x00")
			}
		}
	}
	return b.String()
}

// healMetrics are trowfs_peer_heals_total and trowfs_peer_heals_queued.
func (s *Server) healMetrics() []api.Metric {
	queued, dropped := s.heal.q.stats()
	c := api.TypeCounter
	help := "Heals of blob files whose content did not match their name, by result (healed: a verified copy from a peer replaced the file; failed: no peer served it with matching content, or none was reachable; dropped: the heal queue was full)."
	return []api.Metric{
		{Name: "trowfs_peer_heals_total", Help: help, Type: c, Value: float64(s.heal.healed.Load()), Labels: map[string]string{"result": "healed"}},
		{Name: "trowfs_peer_heals_total", Help: help, Type: c, Value: float64(s.heal.failed.Load()), Labels: map[string]string{"result": "failed"}},
		{Name: "trowfs_peer_heals_total", Help: help, Type: c, Value: float64(dropped), Labels: map[string]string{"result": "dropped"}},
		{Name: "trowfs_peer_heals_queued", Help: "Blob files waiting to be healed from a peer (or being healed).", Type: api.TypeGauge, Value: float64(queued)},
	}
}
