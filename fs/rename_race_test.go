package fs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trowfs/trowfs/fs/fstest"
)

// One goroutine renames fresh files over T in a loop while others open and stat T. Natively no
// open or stat of T ever fails: the name always leads to a file, the old one or the new one.
// Through a path-keyed loopback the kernel resolves T to the old node, the rename orphans it and
// the daemon finds no path for it: ENOENT. Registries rename uploads over existing blobs on a
// re-push, so that is a pull failing while the same blob is pushed again.
func TestOpenRacingRenameOverTargetNeverFails(t *testing.T) {
	writeModes(t, func(t *testing.T, mode string) {
		e := fstest.Mount(t, fstest.Options{WriteMode: mode})
		target := filepath.Join(e.Mnt, "T")
		if err := os.WriteFile(target, []byte("first"), 0o644); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var renames, opens, stats, failedOpens, failedStats atomic.Int64
		var firstErr atomic.Value
		fail := func(err error) {
			firstErr.CompareAndSwap(nil, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tmp := filepath.Join(e.Mnt, fmt.Sprintf("tmp.%d", i))
				if err := os.WriteFile(tmp, []byte(fmt.Sprint(i)), 0o644); err != nil {
					fail(err)
					return
				}
				if err := os.Rename(tmp, target); err != nil {
					fail(err)
					return
				}
				renames.Add(1)
			}
		}()
		for i := range 2 {
			flags := os.O_RDONLY
			if i == 1 {
				flags |= syscall.O_NOFOLLOW // as SQLite opens its database
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 64)
				for {
					select {
					case <-stop:
						return
					default:
					}
					opens.Add(1)
					f, err := os.OpenFile(target, flags, 0)
					if err != nil {
						failedOpens.Add(1)
						fail(err)
						continue
					}
					if _, err := f.Read(buf); err != nil {
						failedOpens.Add(1)
						fail(err)
					}
					f.Close()
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				stats.Add(1)
				if _, err := os.Stat(target); err != nil {
					failedStats.Add(1)
					fail(err)
				}
			}
		}()
		time.Sleep(3 * time.Second)
		close(stop)
		wg.Wait()
		t.Logf("%d renames; %d of %d opens and %d of %d stats failed", renames.Load(), failedOpens.Load(), opens.Load(), failedStats.Load(), stats.Load())
		if renames.Load() == 0 {
			t.Fatal("no rename happened")
		}
		if failedOpens.Load() != 0 || failedStats.Load() != 0 {
			t.Errorf("%d opens and %d stats of a name that always existed failed; first: %v", failedOpens.Load(), failedStats.Load(), firstErr.Load())
		}
		e.AssertMatchesRescan()
	})
}

// A node keeps a descriptor of its object only while the kernel holds it: after thousands of
// renames over a name and unlinks through the mount, the daemon holds about as many descriptors
// as before (the kernel forgets replaced and unlinked inodes as soon as nothing uses them).
func TestKeptDescriptorsAreReleased(t *testing.T) {
	e := fstest.Mount(t, fstest.Options{})
	target := filepath.Join(e.Mnt, "T")
	if err := os.WriteFile(target, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	openFds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := openFds()
	const n = 2000
	for i := range n {
		tmp := filepath.Join(e.Mnt, fmt.Sprintf("tmp.%d", i))
		if err := os.WriteFile(tmp, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(target); err != nil { // the kernel holds T's node
			t.Fatal(err)
		}
		if i%2 == 0 {
			err := os.Rename(tmp, target)
			if err != nil {
				t.Fatal(err)
			}
		} else if err := os.Remove(tmp); err != nil {
			t.Fatal(err)
		}
	}
	// FORGET reaches the daemon asynchronously.
	deadline := time.Now().Add(10 * time.Second)
	after := openFds()
	for after-before > 50 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		after = openFds()
	}
	t.Logf("%d descriptors before, %d after %d renames over T and unlinks", before, after, n)
	if after-before > 50 {
		t.Errorf("%d descriptors more after %d renames and unlinks: kept descriptors are not released", after-before, n)
	}
	e.AssertMatchesRescan()
}
