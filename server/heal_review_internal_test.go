package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

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
