package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	dA = digest.FromString("a")
	dB = digest.FromString("b")
)

func TestHealQueueBoundedAndOncePerPath(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := newHealQueue(clk.now, 2, time.Second, time.Minute)
	if !q.add("blobs/a", dA) || !q.add("blobs/a", dA) || !q.add("blobs/b", dB) {
		t.Fatal("adds refused below the bound")
	}
	if q.add("blobs/c", dB) {
		t.Fatal("a third path was queued in a queue of two")
	}
	if n, dropped := q.stats(); n != 2 || dropped != 1 {
		t.Fatalf("stats = %d queued, %d dropped; want 2, 1", n, dropped)
	}
	a, ok, _ := q.next()
	b, ok2, _ := q.next()
	if !ok || !ok2 || a.rel != "blobs/a" || b.rel != "blobs/b" {
		t.Fatalf("next = %q %v, %q %v", a.rel, ok, b.rel, ok2)
	}
	// Both run: nothing else is due, and a path that runs is never handed out twice.
	if _, ok, wait := q.next(); ok || wait != 0 {
		t.Fatalf("next while both run = %v, wait %v", ok, wait)
	}
	q.add("blobs/a", dA) // seen bad again while its heal runs: still once
	if _, ok, _ := q.next(); ok {
		t.Fatal("a running path was handed out again")
	}
	q.done(a, nil)
	q.done(b, nil)
	if n, _ := q.stats(); n != 0 {
		t.Fatalf("%d paths left after both healed", n)
	}
}

func TestHealQueueBacksOffAndRetriesOnNewPeers(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := newHealQueue(clk.now, 10, time.Second, 5*time.Second)
	q.add("blobs/a", dA)
	fail := errors.New("no peer has it")
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		it, ok, _ := q.next()
		if !ok {
			t.Fatalf("attempt %d: nothing due", i)
		}
		q.done(it, fail)
		_, ok, wait := q.next()
		if ok || wait != want {
			t.Fatalf("after failure %d: due %v, wait %v; want a wait of %v", i+1, ok, wait, want)
		}
		clk.add(wait - time.Millisecond)
		if _, ok, _ := q.next(); ok {
			t.Fatalf("after failure %d: due before its back-off passed", i+1)
		}
		clk.add(time.Millisecond)
	}
	it, _, _ := q.next()
	q.done(it, fail)
	if _, ok, _ := q.next(); ok {
		t.Fatal("due right after a failure")
	}
	q.retryAll() // a peer joined
	if it, ok, _ := q.next(); !ok || it.rel != "blobs/a" || it.attempts != 6 {
		t.Fatalf("after retryAll: %+v %v", it, ok)
	}
}

func TestHealQueueForgetsWhatIsNoLongerBad(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := newHealQueue(clk.now, 10, time.Second, time.Minute)
	q.add("repo/blobs/a", dA)
	q.add("repo/blobs/b", dB)
	q.add("zz/b", dB)
	it, _, _ := q.next()
	q.remove(it.rel, false) // rewritten while its heal ran
	q.done(it, errors.New("late failure"))
	q.remove("repo", true) // the directory went
	if n, _ := q.stats(); n != 1 {
		t.Fatalf("%d paths queued; want only zz/b", n)
	}
	// A path queued again with another digest while its heal ran is healed again for that one.
	it, _, _ = q.next()
	q.add(it.rel, dA)
	q.done(it, nil)
	it2, ok, _ := q.next()
	if !ok || it2.rel != "zz/b" || it2.want != dA {
		t.Fatalf("next = %+v %v; want zz/b for %s", it2, ok, dA)
	}
}

// The workers heal every queued path, never one path twice at a time, retry failures after the
// back-off and stop with their context.
func TestHealQueueWorkers(t *testing.T) {
	q := newHealQueue(time.Now, 100, time.Millisecond, 4*time.Millisecond)
	var mu sync.Mutex // guards calls, running
	calls := map[string]int{}
	running := map[string]bool{}
	var twice atomic.Bool
	healed := make(chan string, 100)
	heal := func(ctx context.Context, it healItem) error {
		mu.Lock()
		if running[it.rel] {
			twice.Store(true)
		}
		running[it.rel] = true
		calls[it.rel]++
		n := calls[it.rel]
		mu.Unlock()
		defer func() { mu.Lock(); running[it.rel] = false; mu.Unlock() }()
		q.add(it.rel, it.want) // found bad again meanwhile: must not start a second heal
		if n < 3 {
			return errors.New("peer down")
		}
		healed <- it.rel
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); q.work(ctx, heal, nil) }()
	}
	paths := []string{"a", "b", "c", "d", "e"}
	for _, p := range paths {
		q.add(p, dA)
	}
	got := map[string]bool{}
	for len(got) < len(paths) {
		select {
		case p := <-healed:
			got[p] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("healed only %v", got)
		}
	}
	cancel()
	wg.Wait()
	if twice.Load() {
		t.Fatal("one path was healed by two workers at once")
	}
	for _, p := range paths {
		if calls[p] != 3 {
			t.Errorf("%s: %d heal attempts, want 3 (two failures, then success)", p, calls[p])
		}
	}
	if n, _ := q.stats(); n != 0 {
		t.Fatalf("%d paths left queued", n)
	}
}

// TestHealQueueOverflowIsHealedOnceThereIsRoom: far more blobs are found bad at once (one scrub)
// than the queue holds. The queue stays bounded and counts what it dropped, and every bad blob
// is still healed once the queue has room: a scrub may not run again for days, so "queued again
// when next found bad" alone would leave most of them rotten (and refused under eio) until then.
func TestHealQueueOverflowIsHealedOnceThereIsRoom(t *testing.T) {
	const n, max = 20000, 100
	h := &healing{q: newHealQueue(time.Now, max, time.Millisecond, time.Millisecond)}
	for i := 0; i < n; i++ {
		rel := fmt.Sprintf("blobs/%06d", i)
		d := digest.FromString(rel)
		h.bad.set(rel, d)
		h.q.add(rel, d)
	}
	queued, dropped := h.q.stats()
	if queued != max || dropped != n-max {
		t.Fatalf("after %d bad blobs: %d queued, %d dropped; want %d, %d", n, queued, dropped, max, n-max)
	}
	var mu sync.Mutex // guards healed, peak
	healed := map[string]int{}
	peak := 0
	done := make(chan struct{})
	heal := func(ctx context.Context, it healItem) error {
		if q, _ := h.q.stats(); q > max {
			mu.Lock()
			peak = q
			mu.Unlock()
		}
		h.bad.clear(it.rel, false) // the healed file's commit clears it (Tracker.Healed)
		mu.Lock()
		healed[it.rel]++
		if len(healed) == n {
			close(done)
		}
		mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < healWorkers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); h.work(ctx, heal) }()
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(healed) != n {
		t.Fatalf("healed %d of %d bad blobs; the rest wait for a scrub that may not come", len(healed), n)
	}
	for p, c := range healed {
		if c != 1 {
			t.Fatalf("%s healed %d times", p, c)
		}
	}
	if _, d := h.q.stats(); d != n-max {
		t.Fatalf("dropped = %d after the refills, want %d: a refill that fills the queue drops nothing new", d, n-max)
	}
	if peak != 0 {
		t.Fatalf("the queue held %d paths, more than its bound %d", peak, max)
	}
}

func TestBadBlobs(t *testing.T) {
	var b badBlobs
	if b.has("x") {
		t.Fatal("empty set has x")
	}
	b.set("r/blobs/a", dA)
	b.set("r/blobs/b", dB)
	b.set("s/blobs/c", dB)
	b.clear("r/blobs", false) // an event for the directory itself, not a removal
	if !b.has("r/blobs/a") {
		t.Fatal("clear of a directory entry without removal forgot a file under it")
	}
	b.clear("r/blobs/a", false)
	b.clear("r", true)
	if b.has("r/blobs/a") || b.has("r/blobs/b") || !b.has("s/blobs/c") || b.n.Load() != 1 {
		t.Fatalf("set after clears: %v (n %d)", b.paths, b.n.Load())
	}
}

// watch retries every waiting heal as soon as the members' fingerprint changes, and only then.
func TestHealQueueWatchRetriesWhenMembersChange(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := newHealQueue(clk.now, 10, time.Hour, time.Hour)
	q.add("blobs/a", dA)
	it, _, _ := q.next()
	q.done(it, errors.New("no live peer"))
	<-q.wake          // drain the add's wake-up
	var mu sync.Mutex // guards fp
	fp := ""
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.watch(ctx, tick, func() string { mu.Lock(); defer mu.Unlock(); return fp })
	tick <- time.Time{} // same fingerprint: nothing retried
	tick <- time.Time{} // (the second send returns once the first tick was handled)
	if _, ok, _ := q.next(); ok {
		t.Fatal("retried without a change of members")
	}
	mu.Lock()
	fp = "a=sha256:1"
	mu.Unlock()
	tick <- time.Time{}
	<-q.wake // retryAll wakes the workers
	if it, ok, _ := q.next(); !ok || it.rel != "blobs/a" {
		t.Fatalf("after a member joined: %+v %v, want blobs/a due at once", it, ok)
	}
}
