package tracker

import (
	"sync"
	"sync/atomic"
	"time"
)

// waitFor waits on c, whose lock the caller holds, until done() holds or d has passed, and
// reports done(). sync.Cond has no timed wait: a timer broadcasts once at the deadline, taking
// c.L to do so, so that its wake cannot fall between a check of done and the Wait after it.
// wakes counts the wake-ups, for tests that show a waiter is woken by the event it waits for
// and not at an interval.
func waitFor(c *sync.Cond, d time.Duration, wakes *atomic.Int64, done func() bool) bool {
	if done() {
		return true
	}
	expired := false // guarded by c.L
	timer := time.AfterFunc(d, func() {
		c.L.Lock()
		expired = true
		c.Broadcast()
		c.L.Unlock()
	})
	defer timer.Stop()
	for !expired {
		c.Wait()
		wakes.Add(1)
		if done() {
			return true
		}
	}
	return false
}
