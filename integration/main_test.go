package integration

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// TestMain gives this test process its own temporary root (TMPDIR), so that every FUSE mount
// under it is this process's. After the tests it detaches any mount left there and fails the run
// loudly: a leftover mount is a bug. A watchdog armed shortly before -test.timeout dumps the
// goroutines of running trowfs processes and aborts their FUSE connections, so a hang fails
// fast instead of wedging CI with unkillable processes.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// watchdogMargin is how long before -test.timeout the watchdog fires.
const watchdogMargin = 20 * time.Second

func runTests(m *testing.M) int {
	flag.Parse()
	root, err := os.MkdirTemp("", "trowfs-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: temporary root:", err)
		return 1
	}
	if err := os.Setenv("TMPDIR", root); err != nil {
		fmt.Fprintln(os.Stderr, "integration: set TMPDIR:", err)
		return 1
	}
	if d := testTimeout(); d > 0 {
		at := d - watchdogMargin
		if at < d/2 {
			at = d / 2
		}
		timer := time.AfterFunc(at, func() {
			fmt.Fprintf(os.Stderr, "\n!!!! integration: %v of the %v -test.timeout used; dumping trowfs goroutines and aborting FUSE connections under %s\n", at, d, root)
			for _, mt := range trowfsbin.Emergency(os.Stderr, root) {
				fmt.Fprintf(os.Stderr, "!!!! aborted and detached %s (%s)\n", mt.Point, mt.FSType)
			}
		})
		defer timer.Stop()
	}

	code := m.Run()

	left, err := trowfsbin.AbortUnder(root)
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "\n!!!! integration: %d FUSE mount(s) were left behind by the tests (a bug; detached now):\n", len(left))
		for _, mt := range left {
			fmt.Fprintf(os.Stderr, "!!!!   %s (%s from %s)\n", mt.Point, mt.FSType, mt.Source)
		}
		if code == 0 {
			code = 1
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "!!!! integration: detaching leftover mounts:", err)
		if code == 0 {
			code = 1
		}
	}
	trowfsbin.Cleanup()
	if len(trowfsbin.FUSEMountsUnder(root)) == 0 {
		// Only once nothing is mounted there: RemoveAll through a live mount would delete data.
		_ = os.RemoveAll(root)
	} else {
		fmt.Fprintf(os.Stderr, "!!!! integration: %s kept: mounts are still attached below it\n", root)
	}
	return code
}

// testTimeout is the -test.timeout the binary runs with (0: none).
func testTimeout() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if d, ok := g.Get().(time.Duration); ok {
			return d
		}
	}
	d, _ := time.ParseDuration(f.Value.String())
	return d
}
