package peers

import (
	"bytes"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

// TestReviewStopLeavesNoGoroutines: a node that synced over the real data plane and memberlist
// leaves no goroutine (and so no connection) behind once Stop returns, give or take a moment for
// closed sockets' goroutines to notice.
func TestReviewStopLeavesNoGoroutines(t *testing.T) {
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
