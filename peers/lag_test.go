package peers

import (
	"net/http"
	"testing"
	"time"
)

// A push is stamped as soon as observing allows, not a whole Debounce later: the debounce follows
// what an observe costs (a few microseconds for this view), Debounce only bounds it.
func TestNotifyStampsWithoutWaitingTheWholeDebounce(t *testing.T) {
	nodes := startCluster(t, clusterOpts{names: []string{"a"}, debounce: 10 * time.Second, sync: time.Minute})
	a := nodes[0]
	waitFor(t, 5*time.Second, "the first observe done", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.observeCost > 0
	})
	time.Sleep(50 * time.Millisecond) // and the apply loop's, which follows it
	before := a.Status().Root
	start := time.Now()
	push(a, "library/app", "v1", m1)
	waitFor(t, 2*time.Second, "the push stamped", func() bool { return a.Status().Root != before })
	t.Logf("stamped %s after the notification (Debounce 10s)", time.Since(start).Round(time.Millisecond))
}

// A local change reaches a peer that cannot reach us (so it cannot pull) and whose own syncs are a
// minute apart: the node that stamped the change offers it at once.
func TestLocalChangeIsOfferedWithoutWaitingForThePeersSync(t *testing.T) {
	fs := map[string]*faults{}
	nodes := startCluster(t, clusterOpts{names: []string{"a", "b"}, sync: time.Minute, http: func(name string) *http.Client {
		f := newFaults()
		fs[name] = f
		return &http.Client{Transport: f, Timeout: requestTimeout}
	}})
	a, b := nodes[0], nodes[1]
	waitFor(t, 10*time.Second, "in sync before the push", func() bool { return converged(nodes) })
	fs["b"].set(fs["b"].down, a.dataAdv, true) // b's syncs with a fail: only a's offer brings the tag
	start := time.Now()
	push(a, "library/app", "v1", m1)
	waitFor(t, 5*time.Second, "v1 in B's Live", func() bool { return b.reg.lastLive()["library/app"].Tags["v1"] == m1 })
	t.Logf("in B's Live %s after the push", time.Since(start).Round(time.Millisecond))
}
