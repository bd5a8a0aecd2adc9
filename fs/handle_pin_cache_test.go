package fs

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// The handle cache pins the descriptor of an object whose last link is gone: eviction passes it
// over however many other descriptors are opened, it does not count against the bound (linked
// objects still get at most max), and it is closed when its last keeper is forgotten. An entry
// kept before its unlink (keepLent, as Node.keepObject does) is not evicted while the unlink is
// in flight, when its link count would still read 1; once released, it is pinned.
func TestHandleCachePinsUnlinkedObjectsUntilForgotten(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		t.Skip("open_by_handle_at needs CAP_DAC_READ_SEARCH")
	}
	dir := t.TempDir()
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	var dst unix.Stat_t
	if err := unix.Fstat(dfd, &dst); err != nil {
		t.Fatal(err)
	}
	const size = 2
	c, err := newHandleCache(dfd, dst.Dev, size)
	if err != nil {
		t.Fatalf("file handles on %s: %v", dir, err)
	}
	keepPath := func(name string, lent bool) (*handleEntry, uint64) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		keep := c.keep
		if lent {
			keep = c.keepLent
		}
		e, ok := keep(fd, &st)
		if !ok {
			t.Fatalf("%s has no file handle", p)
		}
		return e, st.Ino
	}

	// Kept while linked; other keeps would evict it before the unlink finished.
	gone, goneIno := keepPath("gone", true)
	var linked []*handleEntry
	for i := range 2 * size {
		e, _ := keepPath("linked"+strconv.Itoa(i), false)
		linked = append(linked, e)
	}
	if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	c.release(gone) // the unlink finished
	for i := range 4 * size {
		e, _ := keepPath("more"+strconv.Itoa(i), false)
		linked = append(linked, e)
		if _, open := c.stats(); open > size+1 {
			t.Fatalf("%d descriptors open with one pinned and cache size %d: linked objects are not bounded", open, size)
		}
	}
	if p := c.pinnedCount(); p != 1 {
		t.Fatalf("%d descriptors pinned, want the unlinked file's", p)
	}
	fd, errno := c.acquire(gone)
	if errno != 0 {
		t.Fatalf("the unlinked file's handle after %d other keeps: %v", 6*size, errno)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != goneIno || st.Nlink != 0 {
		t.Fatalf("the pinned descriptor: ino %d with %d links (%v), want %d with none", st.Ino, st.Nlink, err, goneIno)
	}
	c.release(gone)
	c.forget(gone)
	if p := c.pinnedCount(); p != 0 {
		t.Fatalf("%d descriptors pinned after the unlinked file's keeper was forgotten", p)
	}
	for _, e := range linked {
		c.forget(e)
	}
	if entries, open := c.stats(); entries != 0 || open != 0 {
		t.Errorf("%d entries and %d descriptors left after every node was forgotten", entries, open)
	}
}

// Keeps, unlinks, borrows and forgets of many objects from several goroutines through a small
// cache: a borrowed descriptor always leads to its own object (never closed or reused under a
// call, unlinked ones included), and once every keeper is forgotten nothing is left open.
func TestHandleCacheConcurrentPinningLeavesNothingOpen(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		t.Skip("open_by_handle_at needs CAP_DAC_READ_SEARCH")
	}
	dir := t.TempDir()
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	var dst unix.Stat_t
	if err := unix.Fstat(dfd, &dst); err != nil {
		t.Fatal(err)
	}
	c, err := newHandleCache(dfd, dst.Dev, 3)
	if err != nil {
		t.Fatalf("file handles on %s: %v", dir, err)
	}
	const workers, per = 4, 60
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			errs <- func() error {
				type kept struct {
					e   *handleEntry
					ino uint64
				}
				var ks []kept
				for i := range per {
					p := filepath.Join(dir, strconv.Itoa(w)+"-"+strconv.Itoa(i))
					if err := os.WriteFile(p, nil, 0o644); err != nil {
						return err
					}
					fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
					if err != nil {
						return err
					}
					var st unix.Stat_t
					if err := unix.Fstat(fd, &st); err != nil {
						return err
					}
					e, ok := c.keepLent(fd, &st)
					if !ok {
						return os.ErrInvalid
					}
					if i%2 == 0 { // half lose their last link while kept, as a rename over them would
						if err := os.Remove(p); err != nil {
							return err
						}
					}
					c.release(e)
					ks = append(ks, kept{e, st.Ino})
					for _, k := range ks[max(0, len(ks)-8):] {
						fd, errno := c.acquire(k.e)
						if errno != 0 { // an unlinked one evicted and freed answers ESTALE
							return errno
						}
						var st unix.Stat_t
						err := unix.Fstat(fd, &st)
						c.release(k.e)
						if err != nil || st.Ino != k.ino {
							return os.ErrInvalid
						}
					}
				}
				for _, k := range ks {
					c.forget(k.e)
				}
				return nil
			}()
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if entries, open := c.stats(); entries != 0 || open != 0 || c.pinnedCount() != 0 {
		t.Errorf("%d entries, %d descriptors (%d pinned) left after every node was forgotten", entries, open, c.pinnedCount())
	}
}
