package cache

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
)

// Key is the set of key types the cache accepts (those ristretto hashes).
type Key = ristretto.Key

// ErrInvalidSize is returned by New for a non-positive capacity.
var ErrInvalidSize = errors.New("cache: max cost must be positive")

// Stats is a snapshot of the counters of one cache.
type Stats struct {
	Hits   uint64  `json:"hits"`
	Misses uint64  `json:"misses"`
	Ratio  float64 `json:"ratio"` // Hits / (Hits + Misses), 0 when both are 0
}

// Cache maps K to immutable V with a total cost bound. It is safe for
// concurrent use; it holds no lock of its own (ristretto is internally
// synchronised and the counters are atomic).
type Cache[K Key, V any] struct {
	c      *ristretto.Cache[K, V]
	hits   atomic.Uint64
	misses atomic.Uint64
}

// New returns a cache bounded by maxCost (in whatever unit callers pass to
// Set, typically bytes) sized for about expectedItems entries.
func New[K Key, V any](maxCost int64, expectedItems int64) (*Cache[K, V], error) {
	if maxCost <= 0 {
		return nil, ErrInvalidSize
	}
	if expectedItems < 100 {
		expectedItems = 100
	}
	c, err := ristretto.NewCache(&ristretto.Config[K, V]{
		NumCounters: expectedItems * 10,
		MaxCost:     maxCost,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Cache[K, V]{c: c}, nil
}

// Get returns the value stored under k and counts a hit or a miss.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	v, ok := c.c.Get(k)
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return v, ok
}

// Set stores v under k with the given cost. It may be dropped (ristretto's
// admission policy) and becomes visible asynchronously; Wait makes all
// earlier Sets visible.
func (c *Cache[K, V]) Set(k K, v V, cost int64) bool {
	if cost < 1 {
		cost = 1
	}
	return c.c.Set(k, v, cost)
}

// Del removes k.
func (c *Cache[K, V]) Del(k K) { c.c.Del(k) }

// Wait blocks until every earlier Set has been applied.
func (c *Cache[K, V]) Wait() { c.c.Wait() }

// Stats returns the hit and miss counters and the hit ratio.
func (c *Cache[K, V]) Stats() Stats {
	h, m := c.hits.Load(), c.misses.Load()
	s := Stats{Hits: h, Misses: m}
	if h+m > 0 {
		s.Ratio = float64(h) / float64(h+m)
	}
	return s
}

// Close releases the cache's goroutines. The cache must not be used after.
func (c *Cache[K, V]) Close() { c.c.Close() }
