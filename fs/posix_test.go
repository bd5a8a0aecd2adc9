package fs_test

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"github.com/trowfs/trowfs/fs/fstest"
)

// knownNative lists posixtest cases that fail on the native filesystem of this machine too (so a
// failure says nothing about trowfs). Each entry says why.
var knownNative = map[string]string{
	// The test expects flock(2) and fcntl(2) locks to conflict; on Linux they are independent
	// lock types, and the test fails on ext4 directly as well.
	"FcntlFlockLocksFile": "flock and fcntl locks do not conflict on Linux (fails natively too)",
}

// TestPosix runs go-fuse's POSIX conformance tests through the mount, in both write modes, and
// checks that the tree still equals a rescan afterwards.
func TestPosix(t *testing.T) {
	names := make([]string, 0, len(posixtest.All))
	for n := range posixtest.All {
		names = append(names, n)
	}
	sort.Strings(names)
	writeModes(t, func(t *testing.T, mode string) {
		for _, name := range names {
			t.Run(name, func(t *testing.T) {
				if why, ok := knownNative[name]; ok {
					t.Skip(why)
				}
				e := fstest.Mount(t, fstest.Options{WriteMode: mode})
				posixtest.All[name](t, e.Mnt)
				e.AssertMatchesRescan()
			})
		}
	})
}
